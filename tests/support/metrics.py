"""Parses Prometheus/OpenMetrics text with the prometheus_client library's own parser, for the
cross-process tests: shares no code with fanfold.

Usage: metrics.py < TEXT; prints one JSON object {"name{label=value,...}": value} of every
sample (labels sorted; no braces when a sample has none).
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

samples = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(sample.labels.items()))
        samples[sample.name + ("{%s}" % labels if labels else "")] = sample.value
print(json.dumps(samples))
