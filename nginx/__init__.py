"""NGINX config templates (local stack and production) and their renderer."""
