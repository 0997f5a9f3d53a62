# A black-box Azure app: azure-identity's ManagedIdentityCredential (the environment it is given picks the
# managed identity source), a token for the scope on the command line; prints what it got.
import json
import sys

from azure.identity import ManagedIdentityCredential
from azure.identity._version import VERSION

try:
    token = ManagedIdentityCredential().get_token(sys.argv[1])
    print(json.dumps({'ok': True, 'token': token.token, 'expiresOn': token.expires_on, 'version': VERSION}))
except Exception as error:
    print(json.dumps({'ok': False, 'error': f'{type(error).__name__}: {error}', 'version': VERSION}))
