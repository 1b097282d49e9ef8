"""Isolation: what keeps a vassal from seeing or touching the host and the other vassals.

The room of the spawn path's jail (``jail``: one ``JailSpec`` per vassal, applied in the
child in one documented order, by the fork server's children and by the exec ``stage``),
tyrant mode's companion pieces, and the Linux building blocks both the emperor and the
instance use (``linux``: the system calls Python lacks; ``namespaces`` and
``capabilities``: uWSGI's names; ``cgroups``: v1 and v2; ``limits``: the emperor's cgroup
per vassal). Like ``emperor.protocol``, these modules hold no emperor state, and
``vassal.jail`` (the instance's own ``unshare``, ``chroot``, ``cap``, ``cgroup``...) imports
them: one implementation of each call for both sides.

Everything here is Linux-only and mostly needs root (or the root of a user namespace);
docs/emperor.md ("Isolation") gives the order, the options and the threat model.
"""
