# A black-box AWS app: boto3's default credential chain (only the environment it is given), then
# sts.get_caller_identity at the endpoint named on the command line (the STS stand-in verifies the signature).
import json
import sys

import boto3
import botocore

try:
    session = boto3.session.Session()
    creds = session.get_credentials()
    method = creds.method if creds is not None else None
    arn = session.client('sts', endpoint_url=sys.argv[1]).get_caller_identity()['Arn']
    print(json.dumps({'ok': True, 'arn': arn, 'method': method, 'botocore': botocore.__version__}))
except Exception as error:  # the test reads the failure
    print(json.dumps({'ok': False, 'error': f'{type(error).__name__}: {error}', 'botocore': botocore.__version__}))
