#!/usr/bin/env node
// Validates every Step Functions state machine definition in synthesized CloudFormation
// templates with asl-validator (an independent implementation of the Amazon States Language
// rules, JSONata included): schema, transitions, terminal states, JSONata syntax, and state
// names unique across the whole machine, Map and Parallel branches included (CreateStateMachine
// refuses a definition that breaks any of these, so a deploy would stop there).
//
//   node tools/validate_asl.js [--list-accepted] cdk.out/*.template.json
//
// Prints each problem, then one line: "asl-validator: N errors in M state machines".
// Exit status: 0 when there is no error, 1 on any error or when no state machine was found
// (a gate that checked nothing must not pass).
"use strict";

const fs = require("fs");
const path = require("path");
const validator = require("asl-validator");

// A definition is JSON text with CloudFormation intrinsics spliced in (Fn::Join). They become
// plausible values, so that ARN-shaped fields still look like ARNs to the validator.
const PSEUDO_PARAMETERS = {
  "AWS::Partition": "aws",
  "AWS::Region": "us-east-1",
  "AWS::AccountId": "123456789012",
  "AWS::URLSuffix": "amazonaws.com",
  "AWS::StackName": "stack",
};

function placeholder(value) {
  const [[fn, argument]] = Object.entries(value);
  if (fn === "Ref" && argument in PSEUDO_PARAMETERS) return PSEUDO_PARAMETERS[argument];
  // Only characters that cannot end a JSON string or start an escape.
  const name = typeof argument === "string" ? argument : JSON.stringify(argument);
  return `TOKEN-${fn}-${name}`.replace(/[^A-Za-z0-9:._/-]/g, "-");
}

function renderDefinition(value) {
  if (typeof value === "string") return value;
  const [[fn, argument]] = Object.entries(value);
  if (fn === "Fn::Join") return argument[1].map(renderDefinition).join(argument[0]);
  if (fn === "Fn::Sub" && typeof argument === "string") return argument;
  return placeholder(value);
}

function stateMachines(templatePath) {
  const template = JSON.parse(fs.readFileSync(templatePath, "utf8"));
  return Object.entries(template.Resources || {})
    .filter(([, resource]) => resource.Type === "AWS::StepFunctions::StateMachine")
    .map(([logicalId, resource]) => ({
      name: `${path.basename(templatePath)}:${logicalId}`,
      definition: (resource.Properties || {}).DefinitionString,
    }));
}

// asl-validator 4.0.0's JSONata schema takes a literal string in a payload template to be
// non-empty (its pattern is `.+`), so it refuses "" there, which the ASL allows (a JSON string
// like any other; our workflows initialise variables with it). Worse, one schema error skips
// every later check (duplicate names, transitions). So an empty string inside a payload
// template becomes a placeholder before validation: counted and shown, never silently dropped.
const PAYLOAD_TEMPLATES = new Set([
  "Arguments", "Assign", "Output", "ItemSelector", "BatchInput", "Parameters", "Result",
]);
const EMPTY_PLACEHOLDER = "(empty string)";

function fillEmptyStrings(value, pointer, inTemplate, filled) {
  if (Array.isArray(value)) {
    return value.map((item, index) =>
      fillEmptyStrings(item, `${pointer}/${index}`, inTemplate, filled));
  }
  if (value !== null && typeof value === "object") {
    const copy = {};
    for (const [key, item] of Object.entries(value)) {
      const inside = inTemplate || PAYLOAD_TEMPLATES.has(key);
      copy[key] = fillEmptyStrings(item, `${pointer}/${key}`, inside, filled);
    }
    return copy;
  }
  if (value === "" && inTemplate) {
    filled.push(pointer);
    return EMPTY_PLACEHOLDER;
  }
  return value;
}

function findings(machine) {
  if (machine.definition === undefined) {
    return { errors: ["no DefinitionString (a definition in S3 is not checked here)"], set: [] };
  }
  let definition;
  try {
    definition = JSON.parse(renderDefinition(machine.definition));
  } catch (error) {
    return { errors: [`the definition is not JSON once rendered: ${error.message}`], set: [] };
  }
  const set = [];
  const checked = fillEmptyStrings(definition, "", false, set);
  const result = validator(checked, { checkArn: true, checkPaths: true });
  const errors = result.errors.map((error) => `${error["Error code"]}: ${error.Message}`);
  return { errors, set };
}

function main(args) {
  const listAccepted = args.includes("--list-accepted");
  const templatePaths = args.filter((arg) => arg !== "--list-accepted");
  if (templatePaths.length === 0) {
    console.error("usage: node tools/validate_asl.js [--list-accepted] TEMPLATE.json...");
    return 2;
  }
  let machines = 0;
  let errors = 0;
  const emptyLiterals = [];
  for (const templatePath of templatePaths) {
    for (const machine of stateMachines(templatePath)) {
      machines += 1;
      const found = findings(machine);
      for (const problem of found.errors) {
        errors += 1;
        console.error(`${machine.name}: ${problem}`);
      }
      emptyLiterals.push(...found.set.map((pointer) => `${machine.name}${pointer}`));
    }
  }
  for (const pointer of listAccepted ? emptyLiterals : []) {
    console.log(`asl-validator: accepted "" at ${pointer}`);
  }
  const accepted = emptyLiterals.length
    ? ` (${emptyLiterals.length} empty-string values accepted, which the validator wrongly ` +
      "refuses: --list-accepted shows them)"
    : "";
  console.log(`asl-validator: ${errors} errors in ${machines} state machines${accepted}`);
  if (machines === 0) {
    console.error("asl-validator: no state machine found in the templates given");
    return 1;
  }
  return errors === 0 ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));
