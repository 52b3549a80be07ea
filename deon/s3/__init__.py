"""The S3 door: the only package that talks to boto3, botocore and HTTP."""
