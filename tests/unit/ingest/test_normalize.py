import pytest

from services.ingest.normalize import Block, UnsupportedContentType, normalize

pytestmark = pytest.mark.unit


def test_plain_text_splits_on_blank_lines_and_joins_wrapped_lines():
    text = "First line\nwrapped   here.\n\n\n  \nSecond\tparagraph.\n"
    assert normalize(text, "text/plain") == [
        Block("First line wrapped here.", "paragraph"),
        Block("Second paragraph.", "paragraph"),
    ]


@pytest.mark.parametrize("alias", ["text", "plain", "TEXT/PLAIN", "text/plain; charset=utf-8"])
def test_plain_text_aliases(alias):
    assert normalize("a\n\nb", alias) == [Block("a", "paragraph"), Block("b", "paragraph")]


def test_crlf_and_cr_line_endings():
    assert normalize("one\r\ntwo\r\n\r\nthree\rfour", "text/plain") == [
        Block("one two", "paragraph"),
        Block("three four", "paragraph"),
    ]


def test_control_and_zero_width_characters_are_removed():
    text = "\ufeffze\u200bro\u200c-\u200dwidth\u2060 ok\x00\x07\x1b\n\nnext"
    assert normalize(text, "text") == [
        Block("zero-width ok", "paragraph"),
        Block("next", "paragraph"),
    ]


def test_unicode_is_nfc_normalized():
    decomposed = "cafe\u0301"
    assert normalize(decomposed, "text/plain") == [Block("caf\u00e9", "paragraph")]


def test_empty_and_whitespace_only_documents_give_no_blocks():
    assert normalize("", "text/plain") == []
    assert normalize(" \n\n\t\u200b\n", "md") == []
    assert normalize("<div> <p>  </p></div>", "html") == []


def test_markdown_headings_paragraphs_and_inline_markup():
    md = (
        "# Intro\n\nSome *emphasis* and **bold** with a [link](https://example.com/x)\n"
        "and `inline code` plus ![a diagram](d.png).\n\n### Deep\n\nEnd."
    )
    assert normalize(md, "text/markdown") == [
        Block("Intro", "heading", 1),
        Block(
            "Some emphasis and bold with a link and inline code plus a diagram.", "paragraph"
        ),
        Block("Deep", "heading", 3),
        Block("End.", "paragraph"),
    ]


def test_markdown_setext_heading():
    assert normalize("Title\n=====\n\nSub\n---\n", "markdown") == [
        Block("Title", "heading", 1),
        Block("Sub", "heading", 2),
    ]


def test_markdown_list_items_one_block_each_with_nested_text_flattened():
    md = "- first item\n- second **item**\n  - nested child\n- third\n\n1. numbered\n"
    assert normalize(md, "md") == [
        Block("first item", "list_item"),
        Block("second item nested child", "list_item"),
        Block("third", "list_item"),
        Block("numbered", "list_item"),
    ]


def test_markdown_fenced_and_indented_code_keep_newlines():
    md = "```python\ndef f():\n    return 1\n```\n\ntext\n\n    indented\n      more\n"
    assert normalize(md, "md") == [
        Block("def f():\n    return 1", "code"),
        Block("text", "paragraph"),
        Block("indented\n  more", "code"),
    ]


def test_markdown_table_is_one_block():
    md = "| Name | Value |\n|------|-------|\n| a | `1` |\n| b | [two](http://x) |\n"
    assert normalize(md, "md") == [Block("Name | Value\na | 1\nb | two", "table")]


def test_markdown_raw_html_block_is_parsed_as_html():
    md = "<div>\n<p>raw <b>html</b></p>\n</div>\n\nafter"
    assert normalize(md, "md") == [Block("raw html", "paragraph"), Block("after", "paragraph")]


def test_html_drops_non_content_elements():
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        "<script>var x = 1;</script><noscript>enable js</noscript>"
        "<template><p>tpl</p></template><!-- comment --><p>visible</p></body></html>"
    )
    assert normalize(html, "text/html") == [Block("visible", "paragraph")]


def test_html_block_splitting_and_inline_text_joining():
    html = (
        "<h1>Title <em>here</em></h1><p>a<b>b</b> c</p><p>foo</p><p>bar<br>baz</p>"
        "<div>loose <span>div</span> text<p>inner</p>tail</div>"
        "<ul><li>one</li><li>two <ul><li>nested</li></ul></li></ul>"
        "<blockquote><p>quoted</p><p>more</p></blockquote><h3>Sub</h3>"
    )
    assert normalize(html, "html") == [
        Block("Title here", "heading", 1),
        Block("ab c", "paragraph"),
        Block("foo", "paragraph"),
        Block("bar baz", "paragraph"),
        Block("loose div text", "paragraph"),
        Block("inner", "paragraph"),
        Block("tail", "paragraph"),
        Block("one", "list_item"),
        Block("two nested", "list_item"),
        Block("quoted more", "paragraph"),
        Block("Sub", "heading", 3),
    ]


def test_html_table_and_pre():
    html = (
        "<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td><b>1</b></td></tr></table>"
        "<pre>  x = 1\n    y = 2\n</pre>"
    )
    assert normalize(html, "html") == [
        Block("k | v\na | 1", "table"),
        Block("x = 1\n  y = 2", "code"),
    ]


def test_html_entities_and_zero_width_entities():
    html = "<p>fish &amp; chips&#8203;&nbsp;&nbsp;now</p>"
    assert normalize(html, "html") == [Block("fish & chips now", "paragraph")]


@pytest.mark.parametrize("content_type", ["application/pdf", "", "text/csv", "htm"])
def test_unsupported_content_type(content_type):
    with pytest.raises(UnsupportedContentType, match="supported: text/plain"):
        normalize("x", content_type)


def test_unsupported_content_type_is_a_value_error():
    assert issubclass(UnsupportedContentType, ValueError)


def test_normalize_is_deterministic():
    html = "<p>x</p><ul><li>y</li></ul>"
    assert normalize(html, "html") == normalize(html, "html")
