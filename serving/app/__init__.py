"""The prediction service: FastAPI under gunicorn, serving the model in `data/`."""
