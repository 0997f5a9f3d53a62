// The `aws` section of the sidecar config (DESIGN.md "Config"; STS limits from reference/aws.md §4).
import * as z from 'zod';
import { httpsUrl } from './common.ts';

export const awsSchema = z
  .object({
    roleArn: z
      .string({ error: 'is required' })
      .regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/, 'must be an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)'),
    region: z.string({ error: 'is required' }).regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be an AWS region such as eu-west-1'),
    audience: z.string().min(1).max(255, 'must be at most 255 characters (IAM OIDC client ID limit)').default('sts.amazonaws.com'),
    sessionDurationSeconds: z
      .number()
      .int('must be a whole number of seconds')
      .min(900, 'must be at least 900 (STS minimum)')
      .max(43200, 'must be at most 43200 (STS maximum)')
      .default(3600),
    stsEndpoint: httpsUrl.optional(),
    imds: z.boolean().default(true),
  })
  .strict();

export type AwsConfig = z.output<typeof awsSchema>;
