"""The web API: one flask-smorest blueprint per area, registered by ``hub.app.create_app``."""
