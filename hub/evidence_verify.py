"""verify.sh, the offline check shipped in every evidence bundle (hub/evidence_export.py).

POSIX sh; needs only sha256sum, openssl and xmlsec1 besides sed, grep and cut. Exit 0 when
everything verifies; otherwise 1, after naming every file and entry that does not."""

VERIFY_SH = r'''#!/bin/sh
# Offline check of a consular-hub evidence bundle: sh verify.sh  (exit 0: everything verifies)
# Needs only sh, sha256sum, openssl and xmlsec1 (with sed, grep, cut). See README.txt.
cd "$(dirname "$0")" || exit 2
for tool in sha256sum openssl xmlsec1 sed grep cut; do
  command -v "$tool" >/dev/null 2>&1 || { echo "verify.sh needs $tool on the PATH"; exit 2; }
done
failures=0
fail() { echo "FAILED: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
hash_text() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
hash_file() { sha256sum < "$1" | cut -d' ' -f1; }
log=$(mktemp) || exit 2
trap 'rm -f "$log"' EXIT

# 1. every file as listed in SHA256SUMS
if sha256sum -c --quiet SHA256SUMS; then ok "every file matches SHA256SUMS"
else fail "the files named above differ from SHA256SUMS"; fi

# 2. the hub's signed statement of the chain span
if xmlsec1 --verify --enabled-reference-uris empty --node-xpath "/*/*[local-name()='Signature']" \
     --pubkey-cert-pem certificates/hub.crt chain/head.xml >"$log" 2>&1
then ok "chain/head.xml is signed by the hub (certificates/hub.crt)"
else fail "chain/head.xml: the hub's signature does not verify"; sed 's/^/    /' "$log" | grep -v x509 | tail -n 3; fi
field() {  # the value of the one <$1> element of chain/head.xml, empty when absent or repeated
  [ "$(grep -c "<$1>" chain/head.xml)" = 1 ] || return 0
  sed -n "s:^<$1>\([^<]*\)</$1>\$:\1:p" chain/head.xml
}
first=$(field FirstSeq); previous=$(field PreviousChainHash); last=$(field LastSeq); last_hash=$(field LastChainHash)
for name in FirstSeq PreviousChainHash LastSeq LastChainHash; do
  [ -n "$(field $name)" ] || fail "chain/head.xml: no single <$name> line"
done

# 3. the chain: content hashes and links, from PreviousChainHash to LastChainHash
expected=$first; count=0; own=0
while IFS= read -r line; do
  seq=${line%% *}; rest=${line#* }
  content=${rest%% *}; rest=${rest#* }
  chain=${rest%% *}; json=""
  [ "$rest" = "$chain" ] || json=${rest#* }
  if [ "$seq" != "$expected" ]; then fail "chain entry $expected is missing (found $seq in its place)"; expected=$seq; fi
  if [ -n "$json" ]; then
    own=$((own + 1))
    case $json in "[\"event\",$seq,"*) ;; *) fail "chain entry $seq: its line does not carry its own seq";; esac
    [ "$(hash_text "$json")" = "$content" ] || fail "chain entry $seq: its line does not hash to its content hash (entry changed)"
  fi
  [ "$(hash_text "$previous$content")" = "$chain" ] || fail "chain entry $seq: chain hash does not link to entry $((seq - 1))"
  previous=$chain; expected=$((seq + 1)); count=$((count + 1))
done < chain/entries.txt
if [ "$((expected - 1))" = "$last" ] && [ "$previous" = "$last_hash" ]; then
  ok "chain entries $first..$last link up to the signed LastChainHash ($own of this case)"
else fail "the chain ends at entry $((expected - 1)) with ${previous}, the signed statement says entry $last with $last_hash"; fi

# 4. each file is the one whose digest the chain sealed
while read -r seq path; do
  line=$(grep "^$seq " chain/entries.txt | head -n 1)
  if [ ! -f "$path" ]; then fail "$path (chain entry $seq): missing"; continue; fi
  digest=$(hash_file "$path")
  case $line in *",\"$digest\"]") ok "$path is the digest sealed in chain entry $seq";;
    *) fail "$path: sha256 $digest is not the digest sealed in chain entry $seq (file changed)";; esac
done < chain/files.txt

own_signature="/*/*[local-name()='Signature' and namespace-uri()='http://www.w3.org/2000/09/xmldsig#']"
# 5. signatures (xmlsec1, pinned certificate) and certificates (openssl, at the time of the entry)
while read -r path cert when epoch kind; do
  # the document's own signature: its root's ds:Signature child (a document may carry others inside it,
  # e.g. a partner's attestation, signed on its own)
  if xmlsec1 --verify --enabled-reference-uris empty --node-xpath "$own_signature" \
       --pubkey-cert-pem "certificates/$cert" "$path" >"$log" 2>&1
  then ok "$path: signature verifies with certificates/$cert"
  else fail "$path: signature does not verify with certificates/$cert"; grep -v x509 "$log" | sed 's/^/    /' | tail -n 3; fi
  if [ "$kind" = ca ]; then
    if openssl verify -attime "$epoch" -CAfile certificates/ca-bundle.pem "certificates/$cert" >"$log" 2>&1
    then : ; else fail "certificates/$cert: not valid under certificates/ca-bundle.pem at $when"; sed 's/^/    /' "$log"; fi
  else
    echo "note: certificates/$cert is pinned, not CA-issued: compare its fingerprint with the party's"
  fi
done < chain/signatures.txt

if [ "$failures" -eq 0 ]; then echo "VERIFIED: every file, chain link and signature of this bundle checks out"; exit 0; fi
echo "NOT VERIFIED: $failures problem(s) above"; exit 1
'''
