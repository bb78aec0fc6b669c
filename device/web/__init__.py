"""The web page: try a photo (mask + recoloured), and the live mirror's remote control (Flask, stdlib server).

    from device.web import serve_in_thread
    server = serve_in_thread(mirror, cfg.web)     # .url, .port, .shutdown()
"""
from .app import create_app
from .server import WebServer, serve_in_thread

__all__ = ["WebServer", "create_app", "serve_in_thread"]
