#!/usr/bin/env python3
"""The alternative fixbot's diagnosis is measured against: a loop of Python
`re` searches over the same patterns, case-insensitive, the way
regex-matching chat bots such as opsdroid and errbot match a message.

Usage: python_re.py PATTERNS.json MESSAGES.jsonl [ROUNDS]
Prints one JSON object: messages, the best round's seconds, patterns fired.
"""
import json
import re
import sys
import time

patterns = [re.compile(pattern, re.IGNORECASE) for pattern in json.load(open(sys.argv[1]))]
messages = [json.loads(line) for line in open(sys.argv[2], encoding="utf-8") if line.strip()]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1
best = None
fired = 0
for _ in range(rounds):
    start = time.perf_counter()
    fired = 0
    for message in messages:
        for pattern in patterns:
            if pattern.search(message):
                fired += 1
    elapsed = time.perf_counter() - start
    best = elapsed if best is None else min(best, elapsed)
print(json.dumps({"messages": len(messages), "seconds": best, "fired": fired}))
