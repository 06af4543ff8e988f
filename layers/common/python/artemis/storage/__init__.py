"""Object-store adapters (S3 through boto3)."""
