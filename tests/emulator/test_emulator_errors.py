"""Error answers: unknown users, bad parameters, authentication, wrong paths and the plain-HTTP redirect."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from amp_profile_magic.emulator import Emulator

GetProfile = Callable[..., httpx.Response]
MakeEmulator = Callable[..., tuple[Emulator, httpx.Client]]


def test_unknown_user_answers_documented_error(get_profile: GetProfile) -> None:
    """An unknown user and device answer 400 with the documented JSON error body, byte for byte."""
    response = get_profile(user_id="nobody", device_id="no-device", get_amp_props="true")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.content == b'{"error":"User id and device id not seen before"}'


@pytest.mark.parametrize(
    "user_id", ["user-\u00b2", "user-\u0663", "user-" + "9" * 5000], ids=["superscript", "arabic-indic", "5000-digits"]
)
def test_ids_that_look_like_synthetic_users_are_unknown_not_a_crash(get_profile: GetProfile, user_id: str) -> None:
    """A synthetic-looking id with non-ASCII or too many digits is an unknown user (400), never a 500."""
    response = get_profile(user_id=user_id, get_amp_props="true")
    assert response.status_code == 400
    assert response.content == b'{"error":"User id and device id not seen before"}'


def test_unknown_user_status_is_configurable(make_emulator: MakeEmulator) -> None:
    """unknown_user_status changes the status of the not-seen-before error but not its body."""
    _, http = make_emulator(unknown_user_status=404)
    response = http.get("/v1/userprofile", params={"user_id": "nobody"})
    assert response.status_code == 404
    assert response.json() == {"error": "User id and device id not seen before"}


def test_unknown_user_id_falls_back_to_known_device(get_profile: GetProfile) -> None:
    """When the user id is unknown but the device id is known, the device's user answers."""
    body = get_profile(user_id="nobody", device_id="ffff-ffff-ffff-ffff").json()
    assert body["userData"]["user_id"] == "12345"
    assert body["userData"]["device_id"] == "ffff-ffff-ffff-ffff"


def test_device_only_id_answers_null_user(emulator: Emulator, get_profile: GetProfile) -> None:
    """A device seen without a user id answers user_id null and its device id."""
    device = emulator.dataset.device_only_ids[0]
    body = get_profile(device_id=device, get_amp_props="true").json()
    assert body["userData"]["user_id"] is None
    assert body["userData"]["device_id"] == device
    assert isinstance(body["userData"]["amp_props"]["boolean_property"], bool)


def test_synthetic_user_by_device_id(emulator: Emulator, get_profile: GetProfile) -> None:
    """A synthetic user's device id finds that user, with the same data as the user id lookup."""
    device = emulator.dataset.device_id_of(42)
    by_device = get_profile(device_id=device, get_amp_props="true").json()
    by_user = get_profile(user_id="user-00042", get_amp_props="true").json()
    assert by_device == by_user
    assert by_user["userData"]["device_id"] == device


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"get_amp_props": "true"}, "user_id"),
        ({"user_id": "", "device_id": ""}, "device_id"),
        ({"user_id": "12345", "get_recs": "true"}, "rec_id"),
        ({"user_id": "12345", "get_recs": "true", "rec_id": "x", "rec_type": "best"}, "rec_type"),
        ({"user_id": "12345", "get_propensity": "true", "propensity_type": "score"}, "prediction_id"),
        ({"user_id": "12345", "get_propensity": "true", "prediction_id": "0x10x"}, "propensity_type"),
    ],
)
def test_missing_or_invalid_parameters_answer_400(get_profile: GetProfile, params: dict[str, str], named: str) -> None:
    """A missing or invalid parameter answers 400 with a JSON error naming the parameter."""
    response = get_profile(**params)
    assert response.status_code == 400
    assert named in response.json()["error"]


def test_missing_authorization_header(emulator: Emulator) -> None:
    """No Authorization header answers 401 with the documented plain-text body."""
    response = httpx.get(f"{emulator.url}/v1/userprofile", params={"user_id": "12345"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "Missing Api-Key in Authorization header"


@pytest.mark.parametrize("header", ["Bearer abc", "Api-Key", "api-keyabc", "abc"])
def test_malformed_authorization_header(emulator: Emulator, header: str) -> None:
    """An Authorization header not of the form 'Api-Key <key>' counts as missing."""
    response = httpx.get(f"{emulator.url}/v1/userprofile", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.text == "Missing Api-Key in Authorization header"


def test_wrong_key(emulator: Emulator) -> None:
    """A well-formed header with the wrong key answers 401 'Invalid Api-Key'."""
    response = httpx.get(
        f"{emulator.url}/v1/userprofile",
        params={"user_id": "12345"},
        headers={"Authorization": "Api-Key not-the-key"},
    )
    assert response.status_code == 401
    assert response.text == "Invalid Api-Key"


@pytest.mark.parametrize("path", ["/", "/v1/userprofiles", "/v2/userprofile", "/v1/userprofile/x"])
def test_wrong_path_answers_empty_404(client: httpx.Client, path: str) -> None:
    """Any other path answers 404 with an empty body, even with a valid key."""
    response = client.get(path, params={"user_id": "12345"})
    assert response.status_code == 404
    assert response.content == b""


def test_wrong_path_needs_no_key(emulator: Emulator) -> None:
    """The 404 comes before authentication, as a wrong endpoint is a configuration error."""
    response = httpx.get(f"{emulator.url}/nope")
    assert response.status_code == 404
    assert response.content == b""


def test_plain_http_redirect(make_emulator: MakeEmulator) -> None:
    """In plain-HTTP mode every request answers 301 with an HTML body and the https Location."""
    emu, http = make_emulator(plain_http_redirect=True)
    response = http.get("/v1/userprofile?user_id=12345&get_recs=true&rec_id=a,b")
    assert response.status_code == 301
    host = emu.url.removeprefix("http://")
    assert response.headers["location"] == f"https://{host}/v1/userprofile?user_id=12345&get_recs=true&rec_id=a,b"
    assert response.headers["content-type"] == "text/html"
    assert "<html>" in response.text
    assert "301 Moved Permanently" in response.text
    unauthenticated = httpx.get(f"{emu.url}/anything")
    assert unauthenticated.status_code == 301
    assert unauthenticated.headers["location"] == f"https://{host}/anything"


def test_plain_http_redirect_switches_at_runtime(make_emulator: MakeEmulator) -> None:
    """plain_http_redirect can be turned on and off while the emulator runs."""
    emu, http = make_emulator()
    emu.plain_http_redirect = True
    assert http.get("/v1/userprofile", params={"user_id": "12345"}).status_code == 301
    emu.plain_http_redirect = False
    assert http.get("/v1/userprofile", params={"user_id": "12345"}).status_code == 200


def test_other_methods_are_not_allowed(client: httpx.Client) -> None:
    """Only GET is served on the API path; others answer 405 with an Allow header."""
    response = client.post("/v1/userprofile", params={"user_id": "12345"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
