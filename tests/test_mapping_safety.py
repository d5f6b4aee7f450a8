"""A submitted stylesheet is compiled with access control: each hostile one is refused with its reason (and the
line where it can be known), and the real mappings all still compile and run."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from lxml import etree

from hub.errors import StylesheetRefused
from hub.mappings.safe import compile_stylesheet, transform
from hub.settings import PROJECT_ROOT

XSL = "http://www.w3.org/1999/XSL/Transform"


def stylesheet(body: str, declarations: str = "") -> bytes:
    return (f'<xsl:stylesheet version="1.0" xmlns:xsl="{XSL}" {declarations}>\n{body}\n'
            f'</xsl:stylesheet>').encode()


def template(select: str, declarations: str = "") -> bytes:
    return stylesheet(f'<xsl:template match="/">\n<r><xsl:value-of select="{select}"/></r>\n</xsl:template>',
                      declarations)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A mapping's folder with a file it may read, and a secret beside it that it may not."""
    (tmp_path / "secret.xml").write_text("<secret>the key</secret>")
    mapping_folder = tmp_path / "partner"
    mapping_folder.mkdir()
    (mapping_folder / "codes.xml").write_text("<codes><c>inside</c></codes>")
    (mapping_folder / "common.xsl").write_bytes(stylesheet('<xsl:template name="t"><t/></xsl:template>'))
    return mapping_folder


def refusal(text: bytes, folder: Path, document: bytes = b"<a/>") -> str:
    with pytest.raises(StylesheetRefused) as caught:
        transform(compile_stylesheet(text, folder=folder), etree.fromstring(document), seconds=1.0)
    return str(caught.value.detail if hasattr(caught.value, "detail") else caught.value)


def run(text: bytes, folder: Path) -> bytes:
    return etree.tostring(transform(compile_stylesheet(text, folder=folder), etree.fromstring(b"<a/>")))


def test_every_real_mapping_compiles_and_its_cases_still_map():
    for path in sorted((PROJECT_ROOT / "mappings").glob("*/*.xsl")):
        xslt = compile_stylesheet(path.read_bytes(), folder=path.parent)
        for case in sorted(path.parent.glob(f"cases/{path.stem}/*.input.xml")):
            assert transform(xslt, etree.parse(str(case)).getroot()) is not None, case


def test_reading_inside_its_own_folder_is_allowed(folder):
    assert b"inside" in run(template("document('codes.xml')/codes/c"), folder)
    assert b"inside" in run(template("document(concat('co', 'des.xml'))/codes/c"), folder)
    included = stylesheet('<xsl:include href="common.xsl"/>'
                          '<xsl:template match="/"><r><xsl:call-template name="t"/></r></xsl:template>')
    assert b"<t/>" in run(included, folder)


@pytest.mark.parametrize("select", ["document('../secret.xml')", "document('/etc/passwd')",
                                    "document('file:///etc/passwd')", "document('http://127.0.0.1:9/x')"])
def test_document_with_a_literal_outside_the_folder_is_refused_before_compiling(folder, select):
    with pytest.raises(StylesheetRefused) as caught:
        compile_stylesheet(template(select), folder=folder)
    message = str(caught.value)
    assert "line 3" in message and "outside the mapping's folder" in message


@pytest.mark.parametrize("select", ["document(concat('..', '/secret.xml'))",
                                    "document(concat('http://', '127.0.0.1:9/x'))",
                                    "document(concat('/etc', '/passwd'))"])
def test_document_computed_at_run_time_outside_the_folder_is_refused(folder, select):
    message = refusal(template(select), folder)
    assert "outside the mapping's folder" in message or "denied" in message
    assert "the key" not in message


@pytest.mark.parametrize("instruction", ["include", "import"])
@pytest.mark.parametrize("href", ["../secret.xml", "/etc/passwd", "http://127.0.0.1:9/x.xsl"])
def test_include_and_import_outside_the_folder_are_refused(folder, instruction, href):
    text = stylesheet(f'<xsl:{instruction} href="{href}"/>\n<xsl:template match="/"><r/></xsl:template>')
    with pytest.raises(StylesheetRefused) as caught:
        compile_stylesheet(text, folder=folder)
    assert f"line 2: {instruction} of '{href}', outside the mapping's folder" in str(caught.value)


def test_an_included_file_is_checked_too(folder):
    (folder / "sly.xsl").write_bytes(stylesheet('<xsl:include href="../secret.xml"/>'))
    text = stylesheet('<xsl:include href="sly.xsl"/><xsl:template match="/"><r/></xsl:template>')
    with pytest.raises(StylesheetRefused, match="outside the mapping's folder"):
        compile_stylesheet(text, folder=folder)


def test_exsl_document_which_writes_files_is_refused(folder, tmp_path):
    written = tmp_path / "written.txt"
    text = stylesheet(f'<xsl:template match="/"><exsl:document href="{written}">x</exsl:document><r/>'
                      '</xsl:template>', 'xmlns:exsl="http://exslt.org/common" extension-element-prefixes="exsl"')
    with pytest.raises(StylesheetRefused, match="line 1: declares extension elements"):
        compile_stylesheet(text, folder=folder)
    assert not written.exists()


def test_extension_elements_declared_on_a_literal_result_element_are_refused(folder):
    text = stylesheet('<xsl:template match="/">\n<r xmlns:x="http://xmlsoft.org/XSLT/namespace" '
                      'xsl:extension-element-prefixes="x"><x:debug/></r></xsl:template>')
    with pytest.raises(StylesheetRefused, match="line 3: declares extension elements"):
        compile_stylesheet(text, folder=folder)


@pytest.mark.parametrize("call, namespace", [
    ("php:function('system', 'id')", "http://php.net/xsl"),
    ("saxon:evaluate('1')", "http://saxon.sf.net/"),
    ("x:document('out')", "http://exslt.org/common"),
    ("dyn:evaluate('1')", "http://exslt.org/dynamic"),
])
def test_extension_functions_are_refused(folder, call, namespace):
    prefix = call.split(":")[0]
    with pytest.raises(StylesheetRefused) as caught:
        compile_stylesheet(template(call, f'xmlns:{prefix}="{namespace}"'), folder=folder)
    assert "line 3" in str(caught.value) and "extension function" in str(caught.value)


def test_an_extension_call_in_an_attribute_value_template_is_refused(folder):
    text = stylesheet('<xsl:template match="/">\n<r a="{php:function(\'id\')}"/></xsl:template>',
                      'xmlns:php="http://php.net/xsl"')
    with pytest.raises(StylesheetRefused, match="line 3: calls the extension function php:function"):
        compile_stylesheet(text, folder=folder)


def test_harmless_exslt_functions_are_allowed_and_names_in_strings_are_not_calls(folder):
    text = template("concat(str:padding(3, '-'), count(exsl:node-set('x')), 'php:function(1)')",
                    'xmlns:str="http://exslt.org/strings" xmlns:exsl="http://exslt.org/common"')
    assert b"---1php:function(1)" in run(text, folder)


def test_a_doctype_with_entities_is_refused(folder):
    text = (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
            + stylesheet('<xsl:template match="/"><r>&e;</r></xsl:template>'))
    with pytest.raises(StylesheetRefused, match="DOCTYPE"):
        compile_stylesheet(text, folder=folder)


def test_malformed_and_non_stylesheets_are_refused_with_the_line(folder):
    with pytest.raises(StylesheetRefused, match="line 3: is not well-formed"):
        compile_stylesheet(b'<xsl:stylesheet version="1.0" xmlns:xsl="' + XSL.encode() + b'">\n<a>\n</b>',
                           folder=folder)
    with pytest.raises(StylesheetRefused, match="not an XSLT stylesheet"):
        compile_stylesheet(b"<html/>", folder=folder)
    with pytest.raises(StylesheetRefused, match="does not compile"):
        compile_stylesheet(stylesheet('<xsl:template match="[["><r/></xsl:template>'), folder=folder)


def test_endless_recursion_is_stopped(folder):
    text = stylesheet('<xsl:template name="f"><xsl:call-template name="f"/></xsl:template>'
                      '<xsl:template match="/"><r><xsl:call-template name="f"/></r></xsl:template>')
    assert "infinite template recursion" in refusal(text, folder)


def test_an_exploding_stylesheet_is_stopped_by_the_time_limit(folder):
    text = stylesheet('<xsl:template name="f"><xsl:param name="n" select="0"/>'
                      '<xsl:if test="$n &lt; 40"><xsl:call-template name="f"><xsl:with-param name="n" '
                      'select="$n + 1"/></xsl:call-template><xsl:call-template name="f"><xsl:with-param '
                      'name="n" select="$n + 1"/></xsl:call-template></xsl:if></xsl:template>'
                      '<xsl:template match="/"><r><xsl:call-template name="f"/></r></xsl:template>')
    xslt = compile_stylesheet(text, folder=folder)
    from hub.xml import stylesheets
    transform(compile_stylesheet(stylesheet('<xsl:template match="/"><r/></xsl:template>'), folder=folder),
              etree.fromstring(b"<a/>"))  # the worker running, so that the limit is the stylesheet's alone
    worker = stylesheets._WORKER._process
    started = time.monotonic()
    with pytest.raises(StylesheetRefused, match="runs longer than 0.3 s"):
        transform(xslt, etree.fromstring(b"<a/>"), seconds=0.3)
    assert time.monotonic() - started < 1.0
    worker.join(5)
    assert not worker.is_alive()  # killed: nothing keeps computing 2^40 calls
    again = transform(compile_stylesheet(stylesheet('<xsl:template match="/"><r/></xsl:template>'), folder=folder),
                      etree.fromstring(b"<a/>"))
    assert again.tag == "r"  # a new worker takes the next stylesheet


def test_a_replay_batch_with_one_runaway_refuses_only_that_document(folder):
    from hub.xml.stylesheets import transform_many
    text = stylesheet('<xsl:template name="f"><xsl:param name="n" select="0"/>'
                      '<xsl:if test="$n &lt; 40"><xsl:call-template name="f"><xsl:with-param name="n" '
                      'select="$n + 1"/></xsl:call-template><xsl:call-template name="f"><xsl:with-param '
                      'name="n" select="$n + 1"/></xsl:call-template></xsl:if></xsl:template>'
                      '<xsl:template match="/a[@boom]" priority="2"><r><xsl:call-template name="f"/></r></xsl:template>'
                      '<xsl:template match="/a"><r/></xsl:template>')
    xslt = compile_stylesheet(text, folder=folder)
    calm, runaway = etree.fromstring(b"<a/>"), etree.fromstring(b'<a boom="1"/>')
    outputs = transform_many(xslt, [calm, runaway, b"<a/>"], seconds=0.3)
    assert [getattr(o, "tag", None) for o in outputs] == ["r", None, "r"]
    assert isinstance(outputs[1], StylesheetRefused) and "runs longer" in str(outputs[1])


def test_an_output_past_the_size_limit_is_refused(folder):
    text = stylesheet('<xsl:template match="/"><r><xsl:value-of select="str:padding(5000, \'x\')"/></r>'
                      '</xsl:template>', 'xmlns:str="http://exslt.org/strings"')
    xslt = compile_stylesheet(text, folder=folder)
    with pytest.raises(StylesheetRefused, match="more than the 1000 allowed"):
        transform(xslt, etree.fromstring(b"<a/>"), max_bytes=1000)


def test_an_extension_call_hidden_behind_a_quoted_brace_in_an_attribute_template_is_refused(folder):
    text = stylesheet('<xsl:template match="/"><r a="{concat(\'}\', dyn:evaluate(\'1+1\'))}"/></xsl:template>',
                      'xmlns:dyn="http://exslt.org/dynamic"')
    assert "dyn:evaluate" in refusal(text, folder)
    kept = stylesheet('<xsl:template match="/"><r a="{{literal}} {concat(\'}\', \'x\')}"/></xsl:template>')
    assert b'a="{literal} }x"' in run(kept, folder)  # braces and quoted braces that call nothing still work
