"""Validate sink messages (one JSON object per line in argv[2]) against the JSON Schema in
argv[1] (docs/sink.schema.json). Prints how many of each type passed; exits 1 on the first
message that does not validate, naming it and why."""
import collections
import json
import sys

import jsonschema

with open(sys.argv[1]) as f:
    schema = json.load(f)
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
counts = collections.Counter()
with open(sys.argv[2]) as f:
    for n, line in enumerate(f, 1):
        message = json.loads(line)
        errors = sorted(validator.iter_errors(message), key=lambda e: e.path)
        if errors:
            best = jsonschema.exceptions.best_match(errors)
            print(f"line {n} ({message.get('type')}): {best.message} at {list(best.absolute_path)}")
            sys.exit(1)
        counts[message["type"]] += 1
print(json.dumps(counts, sort_keys=True))
