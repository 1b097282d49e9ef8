"""The hello-world WSGI app of the example vassals (deploy/examples/vassals/hello.ini)."""


def application(environ, start_response):
    body = b"Hello from Imperium!\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
