"""verify.sh, the offline check shipped in every evidence bundle (hub/evidence/export.py).

POSIX sh; needs only sha256sum, openssl and xmlsec1 besides sed, grep, cut and mktemp. Exit 0 when
everything verifies; otherwise 1, after naming every file and entry that does not.

Trust flows from one signature: chain/statement.txt, plain `key=value` lines signed as they are
(chain/statement.sig, checked with `openssl dgst -sha256 -verify`). Every value the script uses is
read from those exact bytes -- nothing is canonicalised between what is verified and what is read --
and the statement carries the sha256 of the chain's lists (entries, files, signatures) and of every
certificate, which are checked before anything is read from them. Values read from files are checked
for their shape (digits, hex) before the shell computes with them."""

VERIFY_SH = r'''#!/bin/sh
# Offline check of a consular-hub evidence bundle: sh verify.sh  (exit 0: everything verifies)
# Needs only sh, sha256sum, openssl and xmlsec1 (with sed, grep, cut, mktemp). See README.txt.
cd "$(dirname "$0")" || exit 2
for tool in sha256sum openssl xmlsec1 sed grep cut mktemp; do
  command -v "$tool" >/dev/null 2>&1 || { echo "verify.sh needs $tool on the PATH"; exit 2; }
done
failures=0
fail() { echo "FAILED: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
hash_text() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
hash_file() { sha256sum < "$1" | cut -d' ' -f1; }
is_number() { case $1 in ''|*[!0-9]*) return 1;; esac; [ ${#1} -le 18 ]; }
is_hash() { case $1 in *[!0-9a-f]*) return 1;; esac; [ ${#1} -eq 64 ]; }
is_member_path() {  # a relative path inside the bundle, under $2/
  case $1 in "$2"/*) ;; *) return 1;; esac
  case $1 in *..*|*//*|*' '*) return 1;; esac
}
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
log=$tmp/log
: > "$tmp/purged"; : > "$tmp/vouching"; : > "$tmp/filed"

# 1. the hub's signed statement: chain/statement.txt as it is, against chain/statement.sig
statement=chain/statement.txt
if openssl x509 -pubkey -noout -in certificates/hub.crt >"$tmp/hub.pub" 2>"$log" &&
   openssl dgst -sha256 -verify "$tmp/hub.pub" -signature chain/statement.sig "$statement" >"$log" 2>&1
then ok "chain/statement.txt is signed by the hub (certificates/hub.crt)"
else fail "chain/statement.txt: the hub's signature does not verify"; sed 's/^/    /' "$log" | tail -n 3; fi
field() {  # the value of the one "$1=" line of the signed statement; empty when absent or repeated
  [ "$(grep -c "^$1=" "$statement" 2>/dev/null)" = 1 ] || return 0
  sed -n "s/^$1=//p" "$statement"
}
first=$(field first_seq); previous=$(field previous_chain_hash)
last=$(field last_seq); last_hash=$(field last_chain_hash)
is_number "$first" || { fail "chain/statement.txt: no single first_seq=<number> line"; first=0; }
is_number "$last" || { fail "chain/statement.txt: no single last_seq=<number> line"; last=0; }
is_hash "$previous" || { fail "chain/statement.txt: no single previous_chain_hash=<sha256> line"; previous=none; }
is_hash "$last_hash" || { fail "chain/statement.txt: no single last_chain_hash=<sha256> line"; last_hash=none; }
[ "$(field chain)" = timeline ] || fail "chain/statement.txt: no single chain=timeline line"

# 2. the files the statement covers, checked before anything is read from them
: > "$tmp/covered"
if [ -f "$statement" ]; then
  while IFS= read -r line; do
    case $line in sha256:*=*) ;; *) continue;; esac
    path=${line#sha256:}; path=${path%%=*}; digest=${line#*=}
    printf '%s\n' "$path" >> "$tmp/covered"
    case $path in chain/*|certificates/*|README.txt|verify.sh) ;; *) fail "chain/statement.txt covers $path: not a file it may cover"; continue;; esac
    case $path in *..*|*' '*) fail "chain/statement.txt covers $path: not a plain path"; continue;; esac
    if [ ! -f "$path" ]; then fail "$path: missing (the signed statement gives its sha256)"
    elif [ "$(hash_file "$path")" = "$digest" ]; then ok "$path is the one the signed statement covers"
    else fail "$path: its sha256 differs from the one in the hub's signed statement (file changed)"; fi
  done < "$statement"
fi
for path in chain/entries.txt chain/files.txt chain/signatures.txt certificates/*; do
  [ "$(grep -cxF -- "$path" "$tmp/covered")" = 1 ] || fail "$path: not covered (once) by the hub's signed statement"
done

# 3. every file as listed in SHA256SUMS
if sha256sum -c --quiet SHA256SUMS; then ok "every file matches SHA256SUMS"
else fail "the files named above differ from SHA256SUMS"; fi

# 4. the chain: content hashes and links, from previous_chain_hash to last_chain_hash
# (a case entry's line: ["event",seq,"at","message id","sender","case",delivery,partner,"KIND","detail",digest])
entry_pattern='^\["event",[0-9]+,"[^"]*",("([^"\\]|\\.)*","([^"\\]|\\.)*","([^"\\]|\\.)*"),(null|[0-9]+),(null|"([^"\\]|\\.)*"),"([A-Z_]+)",.*$'
expected=$first; count=0; own=0
while IFS= read -r line; do
  seq=${line%% *}; rest=${line#* }
  content=${rest%% *}; rest=${rest#* }
  chain=${rest%% *}; json=""
  [ "$rest" = "$chain" ] || json=${rest#* }
  if ! is_number "$seq"; then fail "chain/entries.txt: a line that does not start with an entry number"; continue; fi
  if [ "$seq" != "$expected" ]; then fail "chain entry $expected is missing (found $seq in its place)"; expected=$seq; fi
  if [ -n "$json" ]; then
    own=$((own + 1))
    case $json in "[\"event\",$seq,"*) ;; *) fail "chain entry $seq: its line does not carry its own seq";; esac
    [ "$(hash_text "$json")" = "$content" ] || fail "chain entry $seq: its line does not hash to its content hash (entry changed)"
    # which message (its id, sender and case, as the line spells them) and which kind
    parts=$(printf '%s\n' "$json" | sed -nE "s/$entry_pattern/\\8 \\1/p")
    kind=${parts%% *}; key=${parts#* }
    if [ -z "$parts" ]; then fail "chain entry $seq: its line is not a timeline entry"
    else
      [ "$kind" = PURGED ] && printf '%s\n' "$key" >> "$tmp/purged"
      case $json in
        *',null]') ;;
        *',"'*'"]') printf '%s %s %s\n' "$seq" "$kind" "$key" >> "$tmp/vouching";;
        *) fail "chain entry $seq: its line does not end with a digest or null";;
      esac
    fi
  fi
  [ "$(hash_text "$previous$content")" = "$chain" ] || fail "chain entry $seq: chain hash does not link to entry $((seq - 1))"
  previous=$chain; expected=$((seq + 1)); count=$((count + 1))
done < chain/entries.txt
if [ "$((expected - 1))" = "$last" ] && [ "$previous" = "$last_hash" ]; then
  ok "chain entries $first..$last link up to the signed last_chain_hash ($own of this case)"
else fail "the chain ends at entry $((expected - 1)) with ${previous}, the signed statement says entry $last with $last_hash"; fi

# 5. each file is the one whose digest the chain sealed
while read -r seq path; do
  if ! is_number "$seq" || ! is_member_path "$path" messages; then fail "chain/files.txt: not a \"seq messages/...\" line: $seq $path"; continue; fi
  printf '%s\n' "$seq" >> "$tmp/filed"
  line=$(grep "^$seq " chain/entries.txt | head -n 1)
  if [ ! -f "$path" ]; then fail "$path (chain entry $seq): missing"; continue; fi
  digest=$(hash_file "$path")
  case $line in *",\"$digest\"]") ok "$path is the digest sealed in chain entry $seq";;
    *) fail "$path: sha256 $digest is not the digest sealed in chain entry $seq (file changed)";; esac
done < chain/files.txt

# ... every entry of the case that seals a digest has its file, unless retention purged those bytes
# (the purge removes the received, canonical and sent bytes, and is itself an entry of the chain)
while read -r seq kind key; do
  grep -qx "$seq" "$tmp/filed" && continue
  case $kind in RECEIVED|VERIFIED|MAPPED_IN|DUPLICATE|SENT)
    if grep -qxF -- "$key" "$tmp/purged"; then
      ok "chain entry $seq ($kind): its bytes were purged by retention (the message's PURGED entry is in the chain)"; continue
    fi;;
  esac
  fail "chain entry $seq ($kind): it seals a digest, but chain/files.txt names no file for it"
done < "$tmp/vouching"

# ... and every file under messages/ is one the chain seals or a party signed
{ cut -d' ' -f2- chain/files.txt; cut -d' ' -f1 chain/signatures.txt; } > "$tmp/named" 2>/dev/null
unnamed() {
  for f in "$1"/* "$1"/.[!.]* "$1"/..?*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    if [ -d "$f" ] && [ ! -L "$f" ]; then unnamed "$f"
    elif ! grep -qxF -- "$f" "$tmp/named"; then
      fail "$f: named neither in chain/files.txt nor in chain/signatures.txt (nothing vouches for it)"
    fi
  done
}
[ -d messages ] && unnamed messages

own_signature="/*/*[local-name()='Signature' and namespace-uri()='http://www.w3.org/2000/09/xmldsig#']"
# 6. signatures (xmlsec1, pinned certificate) and certificates (openssl, at the time of the entry)
while read -r path cert when epoch kind; do
  if ! is_member_path "$path" messages || ! is_number "$epoch"; then
    fail "chain/signatures.txt: not a \"messages/... certificate time epoch kind\" line: $path"; continue
  fi
  case $cert in */*|..*|'') fail "chain/signatures.txt: $path: not a certificate name: $cert"; continue;; esac
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
