"""The bundled demo WSGI app (``brood --wsgi-file brood/demo/hello.py`` or
``--module brood.demo.hello``): hello world plus a few paths the tests and benchmarks use."""
