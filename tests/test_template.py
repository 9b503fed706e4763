"""The sandboxed instructions template: rendering, undefined names, escapes, line mapping."""

from __future__ import annotations

import pytest

from runner.config.template import TemplateProblem, Where, needs_render, render

AT = Where("p.yaml", 10, json_path="$.instructions")


def test_plain_text_is_returned_untouched() -> None:
    text = "Use {braces} and 100% of $HOME as text."
    assert not needs_render(text)
    assert render(text, {}, AT) is text


def test_renders_variables_filters_and_loops() -> None:
    out = render(
        "Hi {{ name | title }}!{% for t in topics %} [{{ t }}]{% endfor %}",
        {"name": "ann lee", "topics": ["a", "b"]},
        AT,
    )
    assert out == "Hi Ann Lee! [a] [b]"


def test_undefined_variable_is_an_error_at_its_line() -> None:
    with pytest.raises(TemplateProblem) as info:
        render("one\ntwo\n{{ ghost }}\n", {}, AT)
    p = info.value.problem
    assert (p.file, p.line, p.col) == ("p.yaml", 12, None)
    assert p.message == "template: 'ghost' is undefined"


def test_undefined_attribute_is_an_error() -> None:
    with pytest.raises(TemplateProblem, match="has no attribute 'missing'"):
        render("{{ user.missing }}", {"user": {"name": "x"}}, AT)


def test_one_line_scalars_report_the_value_position() -> None:
    where = Where("p.yaml", 4, 15, one_line=True)
    with pytest.raises(TemplateProblem) as info:
        render("a {{ nope }}", {}, where)
    assert (info.value.problem.line, info.value.problem.col) == (4, 15)


def test_syntax_error_line() -> None:
    with pytest.raises(TemplateProblem) as info:
        render("ok\nfine\n{{ 1 + }}\nmore", {"x": 1}, AT)
    assert info.value.problem.message.startswith("template syntax error:")
    assert info.value.problem.line == 12


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ '{0.__class__}'.format(1) }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ items.append(3) }}",
        "{{ config.update(a=1) }}",
    ],
)
def test_sandbox_refuses_python_internals(text: str) -> None:
    with pytest.raises(TemplateProblem) as info:
        render(text, {"items": [1, 2], "config": {"a": 0}}, AT)
    assert info.value.problem.severity == "error"


def test_runtime_failures_become_problems() -> None:
    with pytest.raises(TemplateProblem, match="ZeroDivisionError"):
        render("{{ 1 // 0 }}", {}, AT)
    with pytest.raises(TemplateProblem):
        render("{{ 'x' * 10**12 }}", {}, AT)  # the sandbox caps range/len blow-ups
