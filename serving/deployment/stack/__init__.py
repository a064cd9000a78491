"""The CDK app that runs the prediction service on ECS Fargate (see serving/deployment/app.py)."""
