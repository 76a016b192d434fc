"""The ML service: scores log events with an IsolationForest over HTTP (FastAPI).

``app.create_app`` builds the API, ``model`` trains, saves and verifies models, ``training`` is the
``save_model.py`` command line. ``detector``, ``dashboard`` and ``evaluation`` are separate parts.
"""
