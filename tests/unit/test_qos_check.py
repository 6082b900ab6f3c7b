"""runtime/qos.py: the one check of a QoS setting, shared by the cloud's components, the bridges and join."""

from __future__ import annotations

import pytest

from runtime.qos import check_qos


def test_zero_and_one_pass_as_they_are() -> None:
    assert check_qos("down_qos", 0) == 0
    assert check_qos("down_qos", 1) == 1


@pytest.mark.parametrize("value", [2, -1, True, "1", 1.0, None])
def test_anything_else_is_refused_naming_the_setting(value: object) -> None:
    with pytest.raises(ValueError, match=rf"^forward_qos must be 0 or 1, not {value!r}$"):
        check_qos("forward_qos", value)
