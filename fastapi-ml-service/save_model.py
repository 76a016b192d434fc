"""Train the model and write model.joblib + model.json: ``python save_model.py [--from-topic] [--help]``."""

from ml_service.training import main

if __name__ == "__main__":
    raise SystemExit(main())
