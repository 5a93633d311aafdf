"""Parses a Prometheus text exposition from stdin with the Prometheus project's own Python
parser and prints every sample as a JSON line: [name, labels, value]. The metrics test feeds it
what a node's /metrics endpoint served; a malformed exposition makes the parser raise."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        print(json.dumps([sample.name, sample.labels, sample.value]))
