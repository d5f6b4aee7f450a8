"""The routes of the documents for citizens.

    GET  /api/v1/citizens/{registration_id}/certificate.pdf?lang=fr|ar   registry:act; the registration certificate
    GET  /api/v1/cases/{reference}/document.pdf?lang=fr|ar               registry:act; what the case holds, printable
    POST /api/v1/documents/{code}/revoke                                 registry:act; {"reason": "..."}
    GET  /api/v1/verify/{code}                                           public (no token), rate-limited: JSON
    GET  /monitor/citizens/{registration_id}/certificate.pdf?lang=      the console's twins of the two PDFs
    GET  /monitor/cases/{reference}/document.pdf?lang=
    GET  /verify, /verify/{code}                                         public pages: type a code, see the answer

A consular agent prints and revokes only for their post (403 otherwise); each print is audited as
DOCUMENT_ISSUED, each revocation as DOCUMENT_REVOKED (registry/printing/issuing.py). The public answers reveal
no more than the document prints (and less); `/api/v1/verify/` is exempt from the API's token check through the
app's `public_paths()` (hub/apps.py).
"""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path as PathParam, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import Field

from hub.access.dependencies import allowed
from hub.api.openapi import problem_response
from hub.access.tokens import Identity
from hub.monitor.web import SECURITY_HEADERS, Viewer, render, viewer
from registry.inputs import StrictIn, Text
from registry.printing import codes, issuing
from registry.printing.documents import TITLES
from registry.printing.render import LANGUAGES
from registry.printing.throttle import Throttle

ACT = "registry:act"  # printing issues an official document: the posts' (and administrators')
PUBLIC_API = "/api/v1/verify/"
Language = Literal["fr", "ar"]
REGISTRATION_ID = r"^MRE-[0-9]{7,10}$"
REFERENCE = r"^[A-Z]{2,4}-[0-9]{4}-[0-9]{6,12}$"
CODE = r"^[0-9A-Za-z\- ]{1,40}$"
LANG_QUERY = Query("fr", description="the document's language: fr (French) or ar (Arabic, right to left)")
PDF_ANSWERS = {200: {"content": {"application/pdf": {}}, "description": "The document, a new one at each print"},
               409: problem_response(409, "Nothing to print: the registration is not ACTIVE, or the case holds no "
                                          "printable document yet")}


def _registry(request: Request):
    return request.app.state.registry


def _base_url(request: Request) -> str:
    return request.app.state.hub.settings.public_url or str(request.base_url).rstrip("/")


def _pdf(issued: issuing.Issued) -> Response:
    return Response(issued.pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{issued.filename}"',
                             "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def _throttle(request: Request) -> None:
    registry = _registry(request)
    throttle = getattr(registry, "verify_throttle", None)
    if throttle is None:
        throttle = registry.verify_throttle = Throttle()
    throttle.check(request.client.host if request.client else "unknown")


# -- the API -------------------------------------------------------------------------------------------------

api = APIRouter(prefix="/api/v1", tags=["documents for citizens"])


@api.get("/citizens/{registration_id}/certificate.pdf", response_class=Response,
         summary="The citizen's registration certificate (attestation d'immatriculation) as PDF, with its "
                 "verification code and QR code; each print is a new document, audited",
         responses=PDF_ANSWERS)
async def certificate_pdf(request: Request, registration_id: str = PathParam(pattern=REGISTRATION_ID),
                          lang: Language = LANG_QUERY, identity: Identity = Depends(allowed(ACT))):
    return _pdf(await run_in_threadpool(issuing.issue_certificate, _registry(request), identity, registration_id,
                                        lang=lang, base_url=_base_url(request)))


@api.get("/cases/{reference}/document.pdf", response_class=Response,
         summary="The printable form of what the case holds (civil-status extract, licence attestation, judicial "
                 "delivery certificate) as PDF with its verification code; 409 when it holds none yet",
         responses=PDF_ANSWERS)
async def case_document_pdf(request: Request, reference: str = PathParam(pattern=REFERENCE),
                            lang: Language = LANG_QUERY, identity: Identity = Depends(allowed(ACT))):
    return _pdf(await run_in_threadpool(issuing.issue_case_document, _registry(request), identity, reference,
                                        lang=lang, base_url=_base_url(request)))


class RevokeIn(StrictIn):
    reason: Text = Field(min_length=1, max_length=200, description="Why (lost, issued in error, replaced...)")


@api.post("/documents/{code}/revoke", summary="Revoke an issued document by its verification code: its "
                                               "verification then says so",
          responses={409: problem_response(409, "Revoked before")})
async def revoke_document(body: RevokeIn, request: Request, code: str = PathParam(pattern=CODE),
                          identity: Identity = Depends(allowed(ACT))):
    return await run_in_threadpool(issuing.revoke, _registry(request), identity, code, reason=body.reason)


@api.get("/verify/{code}", summary="Public: whether a document printed for a citizen is genuine and valid, by its "
                                   "verification code (no token; rate-limited)",
         responses={429: problem_response(429, "Too many verifications from this address: send the same request "
                                               "again after Retry-After")})
async def verify_json(request: Request, code: str = PathParam(max_length=codes.MAX_TYPED)):
    """`status` is genuine, revoked (issued, no longer valid), not_genuine (its record's signature does not hold)
    or unknown (no document has this code, or it is mistyped); a genuine or revoked document also shows what
    identifies it: kind, reference, holder (initial and family name), post, day issued, SHA-256 of the PDF."""
    _throttle(request)
    answer = await run_in_threadpool(issuing.verify, _registry(request), code)
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


# -- the console's PDFs ---------------------------------------------------------------------------------------

console = APIRouter(prefix="/monitor", include_in_schema=False)


def _language(lang: str | None, seen: Viewer) -> str:
    return lang if lang in LANGUAGES else seen.lang if seen.lang in LANGUAGES else "fr"


@console.get("/citizens/{registration_id}/certificate.pdf")
async def console_certificate_pdf(request: Request, registration_id: str = PathParam(pattern=REGISTRATION_ID),
                                  lang: Language | None = Query(None), seen: Viewer = Depends(viewer(ACT))):
    return _pdf(await run_in_threadpool(issuing.issue_certificate, _registry(request), seen.identity,
                                        registration_id, lang=_language(lang, seen), base_url=_base_url(request)))


@console.get("/cases/{reference}/document.pdf")
async def console_case_document_pdf(request: Request, reference: str = PathParam(pattern=REFERENCE),
                                    lang: Language | None = Query(None), seen: Viewer = Depends(viewer(ACT))):
    return _pdf(await run_in_threadpool(issuing.issue_case_document, _registry(request), seen.identity, reference,
                                        lang=_language(lang, seen), base_url=_base_url(request)))


# -- the public pages -----------------------------------------------------------------------------------------

public = APIRouter(include_in_schema=False)


@public.get("/verify")
def verify_form(request: Request, code: str | None = Query(None, max_length=200)):
    """The page where a code is typed; the form comes back here with `code` and goes on to its answer."""
    if code:
        compact = codes.normalise(code)
        if compact is not None:
            return RedirectResponse(f"/verify/{compact}", status_code=303, headers=SECURITY_HEADERS)
    return render(request, None, "documents/verify.html", code=code or "", answer=None, titles=TITLES,
                  mistyped=bool(code))


@public.get("/verify/{code}")
async def verify_page(request: Request, code: str = PathParam(max_length=200)):
    _throttle(request)
    answer = await run_in_threadpool(issuing.verify, _registry(request), code[:codes.MAX_TYPED])
    shown = codes.normalise(code[:codes.MAX_TYPED])
    return render(request, None, "documents/verify.html", code=codes.shown(shown) if shown else code[:40],
                  answer=answer, titles=TITLES, mistyped=shown is None,
                  status_code=404 if answer["status"] == issuing.UNKNOWN else 200)


routers = (api, console, public)
