#!/usr/bin/env python3
"""Renders a kustomize base that uses only `resources`, for machines without kubectl.

    deploy/render-kustomize.py deploy/k8s > rendered.yaml

It prints every resource file of the kustomization (recursing into listed folders that hold a
kustomization of their own) as one YAML stream, in the listed order. It refuses any other
kustomize feature, so it can never render something different from `kubectl kustomize`.
"""

import os
import sys

KINDS = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def kustomization(folder):
    for name in KINDS:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    sys.exit(f"render-kustomize: no kustomization in {folder}")


def resources(path):
    """The `resources` list of a kustomization file, read without a YAML library."""
    listed, in_list = [], False
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.split("#", 1)[0].rstrip()
            if not line.strip():
                continue
            if not line.startswith((" ", "-")):
                key = line.split(":", 1)[0].strip()
                in_list = key == "resources"
                if key not in ("apiVersion", "kind", "resources"):
                    sys.exit(f"render-kustomize: {path}: '{key}' is not supported, use kubectl")
                continue
            if in_list:
                item = line.strip()
                if not item.startswith("- "):
                    sys.exit(f"render-kustomize: {path}: cannot read '{raw.rstrip()}'")
                listed.append(item[2:].strip().strip("'\""))
    return listed


def render(folder, out):
    for item in resources(kustomization(folder)):
        path = os.path.join(folder, item)
        if os.path.isdir(path):
            render(path, out)
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for document in text.split("\n---"):
            body = "\n".join(
                l for l in document.splitlines() if l.strip() and not l.lstrip().startswith("#")
            )
            if body and body != "---":
                out.write("---\n" + document.strip("\n-") + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: render-kustomize.py DIR")
    render(sys.argv[1], sys.stdout)
