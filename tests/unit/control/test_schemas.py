import base64

import pytest

from cloudseed.control.bodies import parse_body
from cloudseed.control.schemas import MetadataBody, ServerCreate
from cloudseed.errors import Invalid, LimitExceeded
from cloudseed.limits import (
    MAX_INJECTED_FILE_BYTES,
    MAX_INJECTED_FILE_PATH_CHARS,
    MAX_INJECTED_FILES,
    MAX_METADATA_ITEMS,
    MAX_METADATA_VALUE_CHARS,
    MAX_USER_DATA_BASE64_CHARS,
)


def _server(**fields: object) -> dict[str, object]:
    return {"name": "vm", **fields}


def _b64(size: int) -> str:
    return base64.b64encode(b"x" * size).decode()


@pytest.mark.parametrize(
    ("body", "field", "limit"),
    [
        (
            _server(metadata={f"k{i}": "v" for i in range(MAX_METADATA_ITEMS + 1)}),
            "metadata",
            MAX_METADATA_ITEMS,
        ),
        (
            _server(metadata={"k": "v" * (MAX_METADATA_VALUE_CHARS + 1)}),
            "metadata.k",
            MAX_METADATA_VALUE_CHARS,
        ),
        (
            _server(user_data="QUFB" * (MAX_USER_DATA_BASE64_CHARS // 4 + 1)),
            "user_data",
            MAX_USER_DATA_BASE64_CHARS,
        ),
        (
            _server(
                files=[{"path": f"/f{i}", "contents": ""} for i in range(MAX_INJECTED_FILES + 1)]
            ),
            "files",
            MAX_INJECTED_FILES,
        ),
        (
            _server(files=[{"path": "/f", "contents": _b64(MAX_INJECTED_FILE_BYTES + 1)}]),
            "files[0].contents",
            MAX_INJECTED_FILE_BYTES,
        ),
        (
            _server(files=[{"path": "/" + "p" * MAX_INJECTED_FILE_PATH_CHARS, "contents": ""}]),
            "files[0].path",
            MAX_INJECTED_FILE_PATH_CHARS,
        ),
    ],
)
def test_limits_are_reported_with_field_and_limit(
    body: dict[str, object], field: str, limit: int
) -> None:
    with pytest.raises(LimitExceeded) as err:
        parse_body(ServerCreate, body)
    assert err.value.field == field
    assert err.value.limit == limit


def test_limits_at_the_boundary_are_accepted() -> None:
    body = _server(
        metadata={f"k{i}": "v" * MAX_METADATA_VALUE_CHARS for i in range(MAX_METADATA_ITEMS)},
        files=[
            {"path": f"/f{i}", "contents": _b64(MAX_INJECTED_FILE_BYTES)}
            for i in range(MAX_INJECTED_FILES)
        ],
        user_data=base64.b64encode(b"x" * (MAX_USER_DATA_BASE64_CHARS // 4 * 3)).decode(),
    )
    parse_body(ServerCreate, body)


@pytest.mark.parametrize("key", ["a/b", "", "k" * 256, "caf\u00e9"])
def test_metadata_keys_outside_novas_pattern_are_refused(key: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_body(MetadataBody, {"metadata": {key: "v"}})
    assert err.value.field.startswith("metadata")


def test_user_data_must_be_base64() -> None:
    with pytest.raises(Invalid, match="base64") as err:
        parse_body(ServerCreate, _server(user_data="not base64!"))
    assert err.value.field == "user_data"


def test_unknown_fields_and_bad_json_are_refused_by_name() -> None:
    with pytest.raises(Invalid) as err:
        parse_body(ServerCreate, _server(flavour="m1"))
    assert err.value.field == "flavour"
    with pytest.raises(Invalid, match="not valid JSON"):
        parse_body(ServerCreate, b"{")
