# A black-box AWS app in Ruby: aws-sdk-core's default credential chain (only the environment it is given),
# then STS GetCallerIdentity at the endpoint named on the command line (the STS stand-in verifies the
# signature). Prints one JSON line. aws-sdk-core 3.168.1 (Debian 12's ruby-aws-sdk-core) knows the container
# endpoint only as AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (lib/aws-sdk-core/ecs_credentials.rb).
require 'json'
require 'aws-sdk-core'

begin
  sts = Aws::STS::Client.new(endpoint: ARGV[0], region: ENV.fetch('AWS_REGION', 'us-east-1'))
  identity = sts.get_caller_identity
  puts JSON.generate(ok: true, arn: identity.arn, provider: sts.config.credentials.class.name, version: Aws::CORE_GEM_VERSION)
rescue StandardError => e
  puts JSON.generate(ok: false, error: "#{e.class}: #{e.message}", version: Aws::CORE_GEM_VERSION)
end
