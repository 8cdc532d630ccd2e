"""The admin REST API: lookups over the serving projections, JWT auth, casbin RBAC, audit.

Build the app with :func:`api.app.create_app`; nothing here runs at import time.
"""
