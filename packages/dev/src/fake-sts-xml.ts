// The XML the fake STS answers, shaped exactly like AWS STS's query protocol (2011-06-15):
// AssumeRoleWithWebIdentityResponse, AssumeRoleResponse, GetCallerIdentityResponse and ErrorResponse.

const NS = 'https://sts.amazonaws.com/doc/2011-06-15/';

export function xmlEscape(value: string): string {
  return value.replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] ?? c,
  );
}

/** STS timestamps: ISO 8601 UTC without fractional seconds. */
export function stsTimestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export interface WebIdentityResult {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken: string;
  readonly expiration: number;
  readonly subject: string;
  readonly audience: string;
  readonly provider: string;
  readonly assumedRoleArn: string;
  readonly assumedRoleId: string;
  readonly requestId: string;
  /** Percentage of the packed session policy and tags limit; present when the token carried tags. */
  readonly packedPolicySize?: number;
  readonly sourceIdentity?: string | undefined;
}

export function assumeRoleWithWebIdentityXml(r: WebIdentityResult): string {
  return `<AssumeRoleWithWebIdentityResponse xmlns="${NS}">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>${xmlEscape(r.subject)}</SubjectFromWebIdentityToken>
    <Audience>${xmlEscape(r.audience)}</Audience>
    <AssumedRoleUser>
      <Arn>${xmlEscape(r.assumedRoleArn)}</Arn>
      <AssumedRoleId>${xmlEscape(r.assumedRoleId)}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>${xmlEscape(r.sessionToken)}</SessionToken>
      <SecretAccessKey>${xmlEscape(r.secretAccessKey)}</SecretAccessKey>
      <Expiration>${r.expiration % 1000 === 0 ? stsTimestamp(r.expiration) : new Date(r.expiration).toISOString()}</Expiration>
      <AccessKeyId>${xmlEscape(r.accessKeyId)}</AccessKeyId>
    </Credentials>${
      r.packedPolicySize === undefined
        ? ''
        : `
    <PackedPolicySize>${r.packedPolicySize}</PackedPolicySize>`
    }
    <Provider>${xmlEscape(r.provider)}</Provider>${
      r.sourceIdentity === undefined
        ? ''
        : `
    <SourceIdentity>${xmlEscape(r.sourceIdentity)}</SourceIdentity>`
    }
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>${r.requestId}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
`;
}

export function assumeRoleXml(r: {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration: number;
  assumedRoleArn: string;
  assumedRoleId: string;
  sourceIdentity: string | undefined;
  requestId: string;
}): string {
  return `<AssumeRoleResponse xmlns="${NS}">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <Arn>${xmlEscape(r.assumedRoleArn)}</Arn>
      <AssumedRoleId>${xmlEscape(r.assumedRoleId)}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>${xmlEscape(r.sessionToken)}</SessionToken>
      <SecretAccessKey>${xmlEscape(r.secretAccessKey)}</SecretAccessKey>
      <Expiration>${stsTimestamp(r.expiration)}</Expiration>
      <AccessKeyId>${xmlEscape(r.accessKeyId)}</AccessKeyId>
    </Credentials>${
      r.sourceIdentity === undefined
        ? ''
        : `
    <SourceIdentity>${xmlEscape(r.sourceIdentity)}</SourceIdentity>`
    }
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>${r.requestId}</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>
`;
}

export function getCallerIdentityXml(r: { arn: string; userId: string; account: string; requestId: string }): string {
  return `<GetCallerIdentityResponse xmlns="${NS}">
  <GetCallerIdentityResult>
    <Arn>${xmlEscape(r.arn)}</Arn>
    <UserId>${xmlEscape(r.userId)}</UserId>
    <Account>${r.account}</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata>
    <RequestId>${r.requestId}</RequestId>
  </ResponseMetadata>
</GetCallerIdentityResponse>
`;
}

/** Sender faults are the caller's (4xx), Receiver faults the service's (5xx). */
export function errorXml(r: { type: 'Sender' | 'Receiver'; code: string; message: string; requestId: string }): string {
  return `<ErrorResponse xmlns="${NS}">
  <Error>
    <Type>${r.type}</Type>
    <Code>${xmlEscape(r.code)}</Code>
    <Message>${xmlEscape(r.message)}</Message>
  </Error>
  <RequestId>${r.requestId}</RequestId>
</ErrorResponse>
`;
}
