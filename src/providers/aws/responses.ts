// The bodies and error shapes of the AWS surfaces (docs/aws.md "Container credentials", "IMDSv2"): the
// credential documents the SDKs parse, and one function per surface that turns a problem into that
// surface's status, headers and body. Pure.
import type { Answer, Problem } from '../contract.ts';
import { type AwsCredentials, awsTimestamp } from './credential.ts';

const JSON_TYPE = 'application/json';
const TEXT_TYPE = 'text/plain';

/** The container-credentials JSON: the four fields every SDK requires, plus AccountId and RoleArn. */
export function containerCredentialsJson(c: AwsCredentials): string {
  return JSON.stringify({
    AccessKeyId: c.accessKeyId,
    SecretAccessKey: c.secretAccessKey.reveal(),
    Token: c.sessionToken.reveal(),
    Expiration: awsTimestamp(c.expiration),
    AccountId: c.accountId,
    RoleArn: c.roleArn,
  });
}

/** The IMDS credentials document (`Code` "Success" is required by Go; `Type` AWS-HMAC; `LastUpdated`). */
export function imdsCredentialsJson(c: AwsCredentials): string {
  return JSON.stringify(
    {
      Code: 'Success',
      LastUpdated: awsTimestamp(c.obtainedAt),
      Type: 'AWS-HMAC',
      AccessKeyId: c.accessKeyId,
      SecretAccessKey: c.secretAccessKey.reveal(),
      Token: c.sessionToken.reveal(),
      Expiration: awsTimestamp(c.expiration),
      AccountId: c.accountId,
    },
    null,
    2,
  );
}

/** A container-credentials error as Go's endpointcreds decodes it: `{"code","message"}`, Content-Type exactly application/json. */
export function containerError(
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): Answer {
  return { status, headers: { 'content-type': JSON_TYPE, ...headers }, body: JSON.stringify({ code, message }) };
}

export function containerProblem(problem: Problem): Answer {
  switch (problem.kind) {
    case 'foreign-host':
      return containerError(403, 'AccessDenied', 'the request must name this metadata listener as its host');
    case 'forwarded':
      return containerError(403, 'AccessDenied', 'forwarded requests are refused');
    case 'ambiguous':
      return containerError(400, 'InvalidRequest', `the ${problem.header} header must appear once`);
    case 'draining':
      return containerError(503, 'ServiceUnavailable', 'spiffe-connector is shutting down', { 'retry-after': '1' });
    case 'refused-key':
      return containerError(400, 'InvalidRequest', problem.message);
    case 'throttled':
      return containerError(429, 'Throttling', 'too many requests', {
        'retry-after': String(problem.retryAfterSeconds),
      });
    case 'unavailable':
      return containerError(503, 'CredentialsUnavailable', problem.error.message, {
        'retry-after': String(problem.retryAfterSeconds),
      });
  }
}

/** IMDS answers are plain text; its errors are the bare reason phrase. */
export function imdsText(status: number, body: string | Buffer, headers: Record<string, string> = {}): Answer {
  return { status, headers: { 'content-type': TEXT_TYPE, ...headers }, body };
}

/** `isTokenRequest`: real IMDS answers a forwarded token PUT with 400 and any other forwarded request with 403. */
export function imdsProblem(problem: Problem, isTokenRequest: boolean, nowMs: number): Answer {
  switch (problem.kind) {
    case 'foreign-host':
      return imdsText(403, 'Forbidden');
    case 'forwarded':
      return imdsText(isTokenRequest ? 400 : 403, isTokenRequest ? 'Bad Request' : 'Forbidden');
    case 'ambiguous':
      return imdsText(400, 'Bad Request');
    case 'draining':
      return imdsText(503, 'Service Unavailable', { 'retry-after': '1' });
    case 'refused-key':
      return imdsText(400, 'Bad Request');
    case 'throttled':
      return imdsText(429, 'Too Many Requests', { 'retry-after': String(problem.retryAfterSeconds) });
    case 'unavailable': {
      const body = JSON.stringify(
        { Code: 'CredentialsUnavailable', Message: problem.error.message, LastUpdated: awsTimestamp(new Date(nowMs)) },
        null,
        2,
      );
      return imdsText(503, body, { 'retry-after': String(problem.retryAfterSeconds) });
    }
  }
}
