"""The secret key never reaches widget state, whatever the form showed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import ipywidgets
from ipywidgets.widgets import widget as widget_module

from tests.conftest import CANARY_KEY

from .conftest import click_and_wait, fill


def walk(widget: Any) -> Iterator[Any]:
    """The widget and every widget below it (children, and widgets held in traits such as layout and style)."""
    yield widget
    for name in widget.keys:
        value = getattr(widget, name)
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, ipywidgets.Widget) and item is not widget:
                yield from walk(item)


def test_no_canary_in_any_widget_state(shell: Any, emulator: Any, form: Any) -> None:
    """After a success and two failures, no widget of the form (or alive anywhere) holds the key in its state."""
    magics = next(item for item in shell.configurables if type(item).__name__ == "AmpProfileMagics")
    assert magics.client.api_key.reveal() == CANARY_KEY  # the key the form must keep out of its state

    fill(form, who="12345", recs="testRecId", props=True, comps="all", out="res")
    click_and_wait(form)
    assert "cookie" in form.output.outputs[1]["data"]["text/html"]
    states = [json.dumps(item.get_state(), default=repr) for item in walk(form.widget)]
    emulator.plain_http_redirect = True
    click_and_wait(form)
    emulator.plain_http_redirect = False
    form.identity_value.value = "nobody-at-all"
    click_and_wait(form)
    assert "Unknown user" in form.output.outputs[0]["data"]["text/plain"]

    tree = list(walk(form.widget))
    assert len(tree) > 20
    states += [json.dumps(item.get_state(), default=repr) for item in tree]
    registry = list(widget_module._instances.values())
    assert set(map(id, tree)) <= set(map(id, registry))
    states += [json.dumps(item.get_state(), default=repr) for item in registry]
    for state in states:
        assert CANARY_KEY not in state
    assert CANARY_KEY not in repr(form)
    assert not any("key" in str(getattr(item, "description", "")).lower() for item in tree)


def test_no_canary_in_widget_state_after_batches(shell: Any, emulator: Any, form: Any) -> None:
    """A pasted batch with failures, a variable batch and a wrong-key batch leave no key in any widget's state."""
    magics = next(item for item in shell.configurables if type(item).__name__ == "AmpProfileMagics")
    assert magics.client.api_key.reveal() == CANARY_KEY
    fill(form, props=True, cohorts=True, out="res")
    form.batch.mode.value = "paste"
    form.batch.pasted.value = "12345\nnobody-at-all\nuser-00001"
    click_and_wait(form)
    assert form.output.outputs[0]["data"]["text/plain"].startswith("2 profiles · 1 failed")
    states = [json.dumps(item.get_state(), default=repr) for item in walk(form.widget)]
    shell.run_cell("ids = ['12345', 'user-00002']")
    form.batch.mode.value = "variable"
    form.batch.variable.value = "ids"
    click_and_wait(form)
    states += [json.dumps(item.get_state(), default=repr) for item in walk(form.widget)]
    shell.run_cell("ids = ['user-00003', 'user-00004']")  # not in the store yet: these are sent
    emulator.plain_http_redirect = True
    click_and_wait(form)
    emulator.plain_http_redirect = False
    assert "Plain HTTP redirected" in form.output.outputs[0]["data"]["text/plain"]

    tree = list(walk(form.widget))
    assert any(isinstance(item, ipywidgets.IntProgress) for item in tree)
    states += [json.dumps(item.get_state(), default=repr) for item in tree]
    states += [json.dumps(item.get_state(), default=repr) for item in widget_module._instances.values()]
    for state in states:
        assert CANARY_KEY not in state
    assert CANARY_KEY not in repr(form)
    assert CANARY_KEY not in form.text_fallback()
