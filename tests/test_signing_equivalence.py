"""hub/trust/signing.py signs and verifies the hub's one XML-signature profile by hand (a template, lxml's
exclusive c14n, `cryptography`); two independent implementations hold it to the standard:

- what `Signer.sign` makes (RSA-2048 and ECDSA P-256) verifies with xmlsec1 and with signxml, for
  documents with and without prefixes, nested and undeclared namespaces, comments, white space,
  characters c14n escapes, the canonical envelope's business document and a partner's document;
- what signxml and xmlsec1 sign (xmlsec1 also with a SignedInfo in the default namespace, no prefix, and
  white space around the signature) verifies with `verify`, which returns the same signed content as
  signxml does, wherever the document stands (inside an envelope carrying xml:* attributes too);
- tampering is refused: the content, the digest, the signature value, a second signature, a wrapped
  copy, a signature moved onto another element, an element added, a KeyValue naming another key, a
  SignedInfo out of the ds namespace; what stands outside the signed document never reaches the caller.
"""
from __future__ import annotations

import base64
import copy
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree
from signxml import DigestAlgorithm, SignatureMethod, XMLSigner, XMLVerifier, methods
from signxml.algorithms import CanonicalizationMethod
from signxml.verifier import SignatureConfiguration

import sigtools as st
from hub.errors import SignatureInvalid
from hub.trust.signing import DS_NS, ECDSA_SHA256, RSA_SHA256, Signer, verify

XMLSEC1 = shutil.which("xmlsec1")
needs_xmlsec1 = pytest.mark.skipif(XMLSEC1 is None, reason="xmlsec1 is not installed (make xmlsec1 installs it)")
SIG = f"{{{DS_NS}}}Signature"
ALGORITHMS = ("rsa-sha256", "ecdsa-sha256")
METHOD = {"rsa-sha256": RSA_SHA256, "ecdsa-sha256": ECDSA_SHA256}
SIGNXML_EXPECTS = SignatureConfiguration(
    location="./", expect_references=1,
    signature_methods=frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.ECDSA_SHA256}),
    digest_algorithms=frozenset({DigestAlgorithm.SHA256}))

DOCUMENTS = {
    "prefixed": b'<p:Doc xmlns:p="urn:p"><p:A>one</p:A><p:B p:kind="x">two</p:B></p:Doc>',
    "namespaces": (b'<Doc xmlns="urn:d" xmlns:unused="urn:u" xmlns:q="urn:q" b="2" a="1">'
                   b'<q:Inner xmlns:r="urn:r" r:at="v" q:at="w"><Deep xmlns="urn:other">x</Deep></q:Inner>'
                   b'<Plain xmlns="">no namespace</Plain><q:Re xmlns:q="urn:q2">redeclared</q:Re></Doc>'),
    "comments-and-space": ("<Doc xmlns='urn:c'>\n  <!-- a comment -->\n  <A>text &amp; &lt;more&gt; &#13; \"q\"</A>\n"
                           "  <B at='tab&#9;nl&#10;&lt;'/>\n  <C>ﺍﻟﻌﺮﺑﻴﺔ   é</C>\n<?pi data?>\n</Doc>").encode(),
    "no-namespace": b"<Doc><A>1</A><B/></Doc>",
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """algorithm -> (Signer, key path, certificate path) of a test party."""
    directory = tmp_path_factory.mktemp("equivalence-pki")
    ca = st.make_ca("equivalence CA")
    made = {}
    for algorithm in ALGORITHMS:
        key, cert = st.issue(ca, "hub", algorithm=algorithm)
        made[algorithm] = (Signer(key, cert), directory / f"{algorithm}.key", st.write_pem(directory, algorithm, key, cert))
    return made


def documents() -> dict[str, etree._Element]:
    parsed = {name: etree.fromstring(data) for name, data in DOCUMENTS.items()}
    parsed["envelope-business"] = st.business(st.licence_request())[1]
    parsed["partner"] = st.narsa_result(None)
    return parsed


def xmlsec1(*args) -> subprocess.CompletedProcess:
    return subprocess.run([XMLSEC1, *map(str, args)], capture_output=True, text=True, timeout=30)


def xmlsec1_verifies(data: bytes, certificate: Path, tmp_path: Path) -> bool:
    path = tmp_path / "to-verify.xml"
    path.write_bytes(data)
    return xmlsec1("--verify", "--pubkey-cert-pem", certificate, path).returncode == 0


def signxml_content(data: bytes, signer: Signer) -> bytes:
    """The signed content signxml returns, canonical."""
    result = XMLVerifier().verify(data, x509_cert=signer.certificate, expect_config=SIGNXML_EXPECTS)
    return etree.tostring(result.signed_xml, method="c14n", exclusive=True)


def in_envelope(document: etree._Element) -> etree._Element:
    """`document` placed inside a tree of others' (namespaces and xml:* attributes on its ancestors, a sibling
    before it), as the canonical envelope, a SOAP body or a REST wrapper carry it; returns the document there."""
    root = etree.fromstring(b'<w:Wrap xmlns:w="urn:wrap" xmlns:p="urn:unrelated" xml:lang="fr" xml:space="preserve">'
                            b'<w:Other>outside</w:Other><w:Body/></w:Wrap>')
    root[1].append(copy.deepcopy(document))
    return root[1][0]


def refused(document: etree._Element, signer: Signer, *words: str) -> None:
    with pytest.raises(SignatureInvalid) as info:
        verify(document, signer.certificate, signer_name="hub")
    for word in words:
        assert word in info.value.detail, f"{word!r} not in {info.value.detail!r}"


# -- what the hub signs, judged by xmlsec1 and signxml --------------------------------------------------

@needs_xmlsec1
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_what_the_hub_signs_verifies_with_xmlsec1_signxml_and_itself(keys, algorithm, tmp_path):
    signer, _, certificate = keys[algorithm]
    for name, document in documents().items():
        signed = signer.sign(document)
        data = etree.tostring(signed)
        assert signed.find(f"{SIG}/{{{DS_NS}}}SignedInfo/{{{DS_NS}}}SignatureMethod").get("Algorithm") == \
            METHOD[algorithm]
        assert xmlsec1_verifies(data, certificate, tmp_path), name
        expected = signxml_content(data, signer)
        for where in (etree.fromstring(data), in_envelope(signed)):
            content = verify(where, signer.certificate, signer_name="hub")
            assert etree.tostring(content, method="c14n", exclusive=True) == expected, name
            assert content.find(SIG) is None and b"comment" not in etree.tostring(content), name
        assert not xmlsec1_verifies(data.replace(b"</", b" </", 1), certificate, tmp_path), name  # a judge that judges
        if b"<!--" in data:  # comments are outside what exclusive c14n signs
            assert xmlsec1_verifies(data.replace(b"a comment", b"another comment"), certificate, tmp_path), name


def test_signing_leaves_the_document_alone_and_replaces_an_old_signature(keys):
    signer = keys["rsa-sha256"][0]
    document = documents()["envelope-business"]
    before = etree.tostring(document)
    once = signer.sign(document)
    assert etree.tostring(document) == before
    twice = signer.sign(once)
    assert len(twice.findall(SIG)) == 1
    verify(twice, signer.certificate, signer_name="hub")


# -- what signxml and xmlsec1 sign, verified by the hub ----------------------------------------------------

def signxml_sign(document: etree._Element, signer: Signer) -> etree._Element:
    method = SignatureMethod.RSA_SHA256 if signer.algorithm == "rsa-sha256" else SignatureMethod.ECDSA_SHA256
    made = XMLSigner(method=methods.enveloped, signature_algorithm=method, digest_algorithm=DigestAlgorithm.SHA256,
                     c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
    made.namespaces = {"ds": DS_NS}
    return made.sign(copy.deepcopy(document), key=signer.key, cert=[signer.certificate])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_what_signxml_signs_verifies_at_the_hub_with_the_same_content(keys, algorithm):
    signer = keys[algorithm][0]
    for name, document in documents().items():
        data = etree.tostring(signxml_sign(document, signer))
        expected = signxml_content(data, signer)
        for where in (etree.fromstring(data), in_envelope(etree.fromstring(data))):
            content = verify(where, signer.certificate, signer_name="hub")
            assert etree.tostring(content, method="c14n", exclusive=True) == expected, name
        refused(etree.fromstring(data.replace(b"</", b"<x/></", 1)), signer, "altered after hub signed it")


TEMPLATE = """<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">
  <SignedInfo>
    <CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
    <SignatureMethod Algorithm="{method}"/>
    <Reference URI="">
      <Transforms>
        <Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
        <Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
      </Transforms>
      <DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
      <DigestValue/>
    </Reference>
  </SignedInfo>
  <SignatureValue/>
  <KeyInfo><X509Data/></KeyInfo>
</Signature>"""


@needs_xmlsec1
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_xmlsec1_signature_without_prefix_and_with_space_around_it_verifies(keys, algorithm, tmp_path):
    """The ds namespace as the signature's default one (no prefix), an indented SignedInfo, and white space
    before and after the signature (its tail is part of the signed content: the enveloped transform removes
    the element only)."""
    signer, key, certificate = keys[algorithm]
    for name, document in documents().items():
        template = copy.deepcopy(document)
        template.text = template.text or "\n  "
        template[-1].tail = "\n  "
        signature = etree.fromstring(TEMPLATE.format(method=METHOD[algorithm]))
        signature.tail = "\n"
        template.append(signature)
        source, output = tmp_path / "template.xml", tmp_path / "signed.xml"
        source.write_bytes(etree.tostring(template))
        result = xmlsec1("--sign", "--privkey-pem", f"{key},{certificate}", "--output", output, source)
        assert result.returncode == 0, result.stderr
        data = output.read_bytes()
        assert b"<SignedInfo>" in data and b"</Signature>\n</" in data
        content = verify(etree.fromstring(data), signer.certificate, signer_name="hub")
        assert etree.tostring(content, method="c14n", exclusive=True) == signxml_content(data, signer), name
        assert etree.tostring(content).endswith(b"\n  \n</" + etree.tostring(content).rsplit(b"</", 1)[1]), name
        refused(etree.fromstring(data.replace(b"</Signature>\n", b"</Signature>\n ")), signer, "altered")


# -- tampering ------------------------------------------------------------------------------------------------

@pytest.fixture
def signed(keys) -> tuple[Signer, etree._Element]:
    signer = keys["rsa-sha256"][0]
    return signer, signer.sign(documents()["envelope-business"])


LIC = "{urn:ma:gov:consular:licence:1}"


def test_content_digest_and_signature_value_tampering_is_refused(signed):
    signer, document = signed
    verify(document, signer.certificate, signer_name="hub")
    content = copy.deepcopy(document)
    content.find(f"{LIC}Licence/{LIC}Number").text = "12/345679"
    refused(content, signer, "altered after hub signed it")
    digest = copy.deepcopy(document)
    value = digest.find(f"{SIG}/{{{DS_NS}}}SignedInfo/{{{DS_NS}}}Reference/{{{DS_NS}}}DigestValue")
    value.text = base64.b64encode(bytes(32)).decode()
    refused(digest, signer, "does not verify as hub's")
    signature_value = copy.deepcopy(document)
    element = signature_value.find(f"{SIG}/{{{DS_NS}}}SignatureValue")
    raw = bytearray(base64.b64decode(element.text))
    raw[10] ^= 1
    element.text = base64.b64encode(bytes(raw)).decode()
    refused(signature_value, signer, "does not verify as hub's")
    other = keys_of_another()
    refused(other.sign(documents()["envelope-business"]), signer, "does not verify as hub's")


def keys_of_another() -> Signer:
    key, cert = st.issue(st.make_ca("another CA"), "hub")
    return Signer(key, cert)


def test_a_second_signature_is_refused(signed):
    signer, document = signed
    document.append(copy.deepcopy(document.find(SIG)))
    refused(document, signer, "2 signatures")


def test_a_wrapped_copy_is_refused(signed):
    """The signed original kept inside the signature (ds:Object), the visible document changed."""
    signer, document = signed
    pristine = copy.deepcopy(document)
    original = copy.deepcopy(document)
    original.remove(original.find(SIG))
    etree.SubElement(document.find(SIG), f"{{{DS_NS}}}Object").append(original)
    document.find(f"{LIC}Licence/{LIC}Number").text = "12/345679"
    refused(document, signer, "ds:Signature must hold", "Object")
    outer = etree.Element(document.tag)  # or the signed document wrapped in a new one carrying the signature
    inner = pristine
    outer.append(inner)
    outer.append(inner.find(SIG))
    refused(outer, signer, "altered")
    refused(inner, signer, "not signed")


def test_a_signature_moved_onto_another_element_is_refused(signed):
    signer, document = signed
    holder = document.find(f"{LIC}Holder")
    holder.append(document.find(SIG))
    refused(document, signer, "not signed")
    refused(holder, signer, "altered")


def test_what_stands_outside_the_signed_document_never_reaches_the_caller(signed):
    signer, document = signed
    pristine = copy.deepcopy(document)
    placed = in_envelope(document)
    placed.getparent().append(etree.fromstring(f'<lic:Licence xmlns:lic="{LIC[1:-1]}"><lic:Number>99</lic:Number>'
                                               f'</lic:Licence>'))
    placed.addprevious(etree.Comment("unsigned"))
    content = verify(placed, signer.certificate, signer_name="hub")
    assert content.getparent() is None and content.getprevious() is None and content.getnext() is None
    assert etree.tostring(content, method="c14n", exclusive=True) == \
        etree.tostring(pristine, method="c14n", exclusive=True).replace(
            etree.tostring(pristine.find(SIG), method="c14n", exclusive=True), b"")
    assert b"99" not in etree.tostring(content) and b"xml:lang" not in etree.tostring(content)
    placed.append(etree.Element(f"{LIC}Extra"))  # the same added inside the signed document: refused
    refused(placed, signer, "altered")


def test_a_comment_inside_is_accepted_but_not_returned(signed):
    signer, document = signed
    number = document.find(f"{LIC}Licence/{LIC}Number")
    number.text = "12/34"
    number.append(etree.Comment("x"))
    number[0].tail = "5673"
    content = verify(document, signer.certificate, signer_name="hub")
    assert content.findtext(f"{LIC}Licence/{LIC}Number") == "12/345673"
    assert b"<!--" not in etree.tostring(content)


def test_a_key_value_naming_another_key_is_refused_and_the_right_one_accepted(keys):
    for algorithm in ALGORITHMS:
        signer = keys[algorithm][0]
        document = signer.sign(documents()["partner"])
        key_info = document.find(f"{SIG}/{{{DS_NS}}}KeyInfo")
        numbers = signer.certificate.public_key().public_numbers()
        if algorithm == "rsa-sha256":
            right = (f'<ds:KeyValue xmlns:ds="{DS_NS}"><ds:RSAKeyValue><ds:Modulus>'
                     f'{base64.b64encode(numbers.n.to_bytes(256, "big")).decode()}</ds:Modulus>'
                     f'<ds:Exponent>AQAB</ds:Exponent></ds:RSAKeyValue></ds:KeyValue>')
            wrong = right.replace("AQAB", "Aw==")
        else:
            point = b"\x04" + numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
            right = (f'<ds:KeyValue xmlns:ds="{DS_NS}"><ECKeyValue xmlns="http://www.w3.org/2009/xmldsig11#">'
                     f'<NamedCurve URI="urn:oid:1.2.840.10045.3.1.7"/><PublicKey>'
                     f'{base64.b64encode(point).decode()}</PublicKey></ECKeyValue></ds:KeyValue>')
            wrong = right.replace("1.2.840.10045.3.1.7", "1.3.132.0.34")
        key_info.insert(0, etree.fromstring(right))
        verify(document, signer.certificate, signer_name="hub")
        XMLVerifier().verify(etree.tostring(document), x509_cert=signer.certificate)  # signxml agrees
        key_info[0].getparent().replace(key_info[0], etree.fromstring(wrong))
        refused(document, signer, "KeyValue does not describe the key")


def test_a_signed_info_outside_the_ds_namespace_is_refused(keys):
    """Elements named like the signature's parts but in no namespace are not the signature's parts."""
    signer = keys["rsa-sha256"][0]
    data = etree.tostring(signer.sign(documents()["no-namespace"]))
    prefix = b"ds:SignedInfo"
    forged = data.replace(b"<" + prefix, b"<SignedInfo xmlns=''").replace(b"</" + prefix, b"</SignedInfo")
    refused(etree.fromstring(forged), signer, "ds:Signature must hold", "{}SignedInfo")


# -- the receipt, written as bytes ----------------------------------------------------------------------------

@needs_xmlsec1
def test_the_receipt_written_as_bytes_is_the_receipt_built_as_a_tree_and_signed(keys, tmp_path):
    import datetime as dt
    from hub.trust.receipts import build_receipt
    from hub.xml.schemas import ENVELOPE_NS
    signer, _, certificate = keys["rsa-sha256"]
    received = dt.datetime(2026, 11, 23, 10, 0, 1, 234000, tzinfo=dt.timezone.utc)
    fields = dict(message_id="REGISTRY-LIC-2026-000001 & <odd>\r", sender="REGISTRY", digest="ab" * 32)
    data = build_receipt(signer, received_at=received, **fields)
    e = lambda tag: f"{{{ENVELOPE_NS}}}{tag}"  # noqa: E731
    tree = etree.Element(e("Receipt"), nsmap={"env": ENVELOPE_NS})
    for tag, text in (("MessageId", fields["message_id"]), ("Sender", "REGISTRY"), ("Digest", fields["digest"]),
                      ("ReceivedAt", "2026-11-23T10:00:01.234+00:00")):
        etree.SubElement(tree, e(tag)).text = text
    tree.find(e("Digest")).set("algorithm", "sha256")
    from_tree = signer.sign(tree)
    receipt = etree.fromstring(data)
    value = f"{SIG}/{{{DS_NS}}}SignatureValue"
    assert receipt.findtext(value) == from_tree.findtext(value)  # same SignedInfo, so same digest of the same content
    content = verify(receipt, signer.certificate, signer_name="hub")
    assert content.findtext(e("MessageId")) == fields["message_id"]
    assert xmlsec1_verifies(data, certificate, tmp_path)
    assert signxml_content(data, signer) == etree.tostring(content, method="c14n", exclusive=True)
    assert not xmlsec1_verifies(data.replace(b"REGISTRY<", b"NARSA<"), certificate, tmp_path)


def test_a_document_that_cannot_be_canonicalised_is_refused_not_an_error(signed):
    """A relative namespace URI in scope (declared on an ancestor: parsing and the schema let it through) makes
    exclusive c14n fail: the signature does not verify, a 400 the door records, not an error of the hub."""
    signer, document = signed
    parent = etree.fromstring(b'<Outer xmlns:rel="relative/uri"/>')
    parent.append(document)
    with pytest.raises(SignatureInvalid, match="cannot be canonicalised"):
        verify(document, signer.certificate, signer_name="hub")
