"""Independent sequential computations of fanfold's operations, for the cross-process tests.

Shares no code with fanfold. Usage: oracle.py OP JSON_OPTIONS FILE...; prints one JSON object:
{"rows": {key: value}, "records": N, "bad": N}. Keys and text values are latin-1 decoded bytes
(a lossless byte <-> str mapping), so invalid UTF-8 survives the trip.
"""

import collections
import csv
import gzip
import io
import json
import math
import re
import subprocess
import sys

op, options, files = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
rows = {}
stats = {"records": 0, "bad": 0}


def read(path):
    data = open(path, "rb").read()
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout
    return data


def plain_name(path):
    for ext in (".gz", ".zst"):
        if path.endswith(ext):
            return path[: -len(ext)]
    return path


def lines(data):
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    return [p[:-1] if p.endswith(b"\r") else p for p in parts]


def record(good):
    stats["records"] += 1
    if not good:
        stats["bad"] += 1


def k(b):
    return b.decode("latin-1")


def number(b):
    try:
        x = float(b.decode("utf-8").strip())
    except (UnicodeDecodeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def fmt():
    return options.get("format")


def records_with_fields(path, data):
    """Yields (get(field) -> bytes or None) per good-shaped record; counts malformed ones."""
    name = plain_name(path).lower()
    form = fmt() or ("csv" if name.endswith((".csv", ".tsv")) else
                     "jsonl" if name.endswith((".jsonl", ".ndjson", ".json")) else "text")
    if form == "csv":
        delim = options.get("delimiter", "\t" if name.endswith(".tsv") else ",")
        reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=delim)
        header = next(reader)
        for row in reader:
            if row == []:
                continue
            if len(row) != len(header) or any("\0" in f for f in row):
                record(False)
                continue

            def get(field, row=row):
                if field in header:
                    return row[header.index(field)].encode("utf-8")
                return None

            yield get
    elif form == "jsonl":
        for line in lines(data):
            if line.strip() == b"":
                continue
            try:
                value = json.loads(line)
                assert b"\0" not in line
            except Exception:
                record(False)
                continue

            def get(field, value=value):
                v = value
                for seg in field.split("."):
                    if isinstance(v, dict) and seg in v:
                        v = v[seg]
                    elif isinstance(v, list) and seg.isdigit() and int(seg) < len(v):
                        v = v[int(seg)]
                    else:
                        return None
                if v is None:
                    return None
                if isinstance(v, str):
                    return v.encode("utf-8")
                return json.dumps(v, separators=(",", ":"), sort_keys=True).encode("utf-8")

            yield get
    else:
        raise SystemExit(f"text input has no fields: {path}")


def tokens(line):
    if options.get("tokenizer") == "unicode":
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return [w.encode("utf-8") for w in re.findall(r"\w+", text.lower())]
    return line.split()


if op == "wordcount":
    counts = collections.Counter()
    for path in files:
        for line in lines(read(path)):
            toks = None if b"\0" in line else tokens(line)
            record(toks is not None)
            counts.update(toks or [])
    rows = {k(t): n for t, n in counts.items()}
elif op == "index":
    postings = collections.defaultdict(set)
    for path in files:
        for line in lines(read(path)):
            toks = None if b"\0" in line else tokens(line)
            record(toks is not None)
            for t in toks or []:
                postings[k(t)].add(path)
    rows = {t: sorted(docs) for t, docs in postings.items()}
elif op == "grep":
    flags = re.IGNORECASE if options.get("ignore_case") == "true" else 0
    pattern = re.compile(options["pattern"].encode(), flags)
    for path in files:
        for number_, line in enumerate(lines(read(path)), start=1):
            good = b"\0" not in line
            record(good)
            if good and bool(pattern.search(line)) != (options.get("invert") == "true"):
                if options.get("output") == "lines":
                    rows[f"{path}:{number_}"] = k(line)
                else:
                    rows[path] = rows.get(path, 0) + 1
elif op == "distinct":
    counts = collections.Counter()
    for path in files:
        data = read(path)
        if "field" not in options:
            for line in lines(data):
                good = b"\0" not in line
                record(good)
                if good:
                    counts[k(line)] += 1
        else:
            for get in records_with_fields(path, data):
                v = get(options["field"])
                record(v is not None)
                if v is not None:
                    counts[k(v)] += 1
    rows = dict(counts)
elif op == "histogram":
    edges = [float(e) for e in options["edges"].split(",")]
    labels = [e.strip() for e in options["edges"].split(",")]
    counts = collections.Counter()

    def bucket(x):
        if x < edges[0]:
            return f"<{labels[0]}"
        if x > edges[-1]:
            return f">{labels[-1]}"
        for i in range(len(edges) - 1):
            last = i == len(edges) - 2
            if edges[i] <= x < edges[i + 1] or (last and x == edges[i + 1]):
                return f"[{labels[i]},{labels[i + 1]}{']' if last else ')'}"
        raise AssertionError(x)

    for path in files:
        for get in records_with_fields(path, read(path)):
            v = get(options["field"])
            x = None if v is None else number(v)
            record(x is not None)
            if x is not None:
                counts[bucket(x)] += 1
    rows = dict(counts)
elif op == "groupby":
    agg = options.get("agg", "count")
    groups = collections.defaultdict(list)
    for path in files:
        for get in records_with_fields(path, read(path)):
            key = get(options["key"])
            value = get(options["value"]) if "value" in options else b""
            if key is None or value is None:
                record(False)
                continue
            if agg in ("sum", "min", "max", "mean"):
                value = number(value)
                if value is None:
                    record(False)
                    continue
            record(True)
            groups[k(key)].append(value)
    for key, vs in groups.items():
        if agg == "count":
            rows[key] = len(vs)
        elif agg == "sum":
            rows[key] = math.fsum(vs)
        elif agg == "min":
            rows[key] = min(vs)
        elif agg == "max":
            rows[key] = max(vs)
        elif agg == "mean":
            rows[key] = math.fsum(vs) / len(vs)
        elif agg in ("distinct", "approx_distinct"):
            rows[key] = len(set(vs))
        elif agg == "topk":
            top = sorted(collections.Counter(vs).items(), key=lambda p: (-p[1], p[0]))
            rows[key] = [[k(v), n] for v, n in top[: int(options.get("k", "10"))]]
else:
    raise SystemExit(f"unknown op {op}")

print(json.dumps({"rows": rows, "records": stats["records"], "bad": stats["bad"]}))
