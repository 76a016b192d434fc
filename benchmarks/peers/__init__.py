"""The peers `make bench` compares with, run as scripts by the peers' own virtualenv (``.venv-peers``)."""
