"""Step Functions workflows: the shared state helpers (`states`) and the Titan workflows."""
