"""The three patch types the client sends, applied as the API server applies them.

JSON patches (RFC 6902) go through the ``jsonpatch`` library, as the server's go through
``evanphx/json-patch``: any operation that does not apply raises ``jsonpatch.JsonPatchException``
or ``jsonpointer.JsonPointerException``, which the fake answers like the server does (422,
``recorded/patch_not_applied.json``).
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH_FAILED = (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException)


def json_patch(doc: Any, ops: list) -> Any:
    """RFC 6902; ``doc`` is left as it was."""
    return jsonpatch.JsonPatch(ops).apply(doc)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, key: str | None = None) -> Any:
    """The part of Kubernetes' strategic merge patch that ``k8s_deploy`` needs: maps merge, a
    Deployment's ``containers`` merge by ``name`` (their patch merge key), other lists are replaced."""
    if isinstance(patch, dict) and isinstance(target, dict):
        result = copy.deepcopy(target)
        for k, v in patch.items():
            if v is None:
                result.pop(k, None)
            else:
                result[k] = strategic_merge_patch(result.get(k), v, k)
        return result
    if key == "containers" and isinstance(patch, list) and isinstance(target, list):
        result = copy.deepcopy(target)
        for item in patch:
            names = [c.get("name") for c in result]
            if item.get("name") in names:
                i = names.index(item["name"])
                result[i] = strategic_merge_patch(result[i], item)
            else:
                result.append(copy.deepcopy(item))
        return result
    return copy.deepcopy(patch)
