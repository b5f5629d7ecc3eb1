"""`atelier`: the command line for a deployed Atelier stage.

It finds every resource it needs from the stage's SSM parameters (`/<prefix>/<stage>/...`, written
by the stacks and by the workflows), falling back to the stacks' CloudFormation outputs, so it never
needs a hand-copied ARN. It lives outside infra/ (CDK code only), lambdas/ and training/ (the code
assets shipped to AWS) because it runs on the engineer's machine and ships with neither.
"""
