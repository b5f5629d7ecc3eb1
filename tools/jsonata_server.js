#!/usr/bin/env node
// Evaluates Step Functions JSONata fields with the reference JavaScript implementation (the npm
// `jsonata` package, pinned to the release Step Functions runs), for the workflow tests'
// interpreter (tests/sfn_support.py). One long-lived process: one JSON request per stdin line,
// one JSON answer per stdout line, in order.
//
// Request: {"template": <a state field: any JSON, "{% ... %}" strings are expressions>,
//           "bindings": {<variable>: <value>, "states": {...}},
//           "millis": <the test clock>, "uuids": [<values $uuid() hands out, in order>]}
// Answer:  {"ok": true, "value": <the field evaluated>, "uuidsUsed": <n>}
//       or {"ok": false, "kind": "undefined" | "error", "path": "/Payload/x",
//           "expression": "...", "message": "..."}
//
// As in Step Functions, a field whose expression evaluates to nothing (JavaScript's undefined)
// is an error, not null: the service fails the state with States.QueryEvaluationError.
"use strict";

const readline = require("readline");
const jsonata = require("jsonata");

const EXPRESSION = /^\{%([\s\S]*)%\}$/;
const compiled = new Map();
const fromMillis = jsonata("$fromMillis($ms, $picture, $timezone)");

function compile(text) {
  let expression = compiled.get(text);
  if (expression === undefined) {
    expression = jsonata(text);
    compiled.set(text, expression);
  }
  return expression;
}

class FieldError extends Error {
  constructor(kind, path, expression, message) {
    super(message);
    this.kind = kind;
    this.path = path;
    this.expression = expression;
  }
}

// The functions Step Functions adds to JSONata (and the clock the tests control).
function extensions(request, counter) {
  return {
    uuid: () => {
      if (counter.used >= request.uuids.length) {
        throw new Error("the test interpreter handed out no more $uuid() values for this field");
      }
      return request.uuids[counter.used++];
    },
    millis: () => request.millis,
    now: (picture, timezone) =>
      fromMillis.evaluate(null, { ms: request.millis, picture, timezone }),
    // Step Functions' $parse: a JSON string to its value ($eval is not available there).
    parse: (text) => JSON.parse(text),
  };
}

async function evaluateField(value, bindings, path) {
  if (typeof value === "string") {
    const match = EXPRESSION.exec(value);
    if (!match) return value;
    const text = match[1].trim();
    let result;
    try {
      result = await compile(text).evaluate(null, bindings);
    } catch (error) {
      const detail = error.code ? `${error.code}: ${error.message}` : String(error.message);
      throw new FieldError("error", path, text, detail);
    }
    if (result === undefined) {
      throw new FieldError("undefined", path, text, "returned nothing (undefined)");
    }
    return result;
  }
  if (Array.isArray(value)) {
    const items = [];
    for (let index = 0; index < value.length; index++) {
      items.push(await evaluateField(value[index], bindings, `${path}/${index}`));
    }
    return items;
  }
  if (value !== null && typeof value === "object") {
    const fields = {};
    for (const [key, item] of Object.entries(value)) {
      fields[key] = await evaluateField(item, bindings, `${path}/${key}`);
    }
    return fields;
  }
  return value;
}

async function answer(line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch (error) {
    return { ok: false, kind: "error", path: "", expression: "", message: error.message };
  }
  const counter = { used: 0 };
  const bindings = { ...request.bindings, ...extensions(request, counter) };
  try {
    const value = await evaluateField(request.template, bindings, "");
    return { ok: true, value, uuidsUsed: counter.used };
  } catch (error) {
    if (error instanceof FieldError) {
      const { kind, path, expression, message } = error;
      return { ok: false, kind, path, expression, message };
    }
    return { ok: false, kind: "error", path: "", expression: "", message: String(error) };
  }
}

// Requests are answered one after the other, in the order they came.
let queue = Promise.resolve();
readline.createInterface({ input: process.stdin, terminal: false }).on("line", (line) => {
  queue = queue.then(async () => {
    process.stdout.write(JSON.stringify(await answer(line)) + "\n");
  });
});
