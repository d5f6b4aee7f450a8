"""Administrators keep the consular posts: POST /api/v1/posts creates one, POST /api/v1/posts/{code}/close
closes one (permission posts:manage). Each is audited (POST_CREATED, POST_CLOSED) in the transaction that
makes the change; a refused request changes nothing. The work is registry/posts.py's; reading the posts is
registry/views.py's (GET /api/v1/posts)."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import Field, field_validator

from hub.access.dependencies import allowed
from hub.access.tokens import Identity
from registry import audit, posts
from registry.inputs import POST_CODE, StrictIn, Text
from registry.outputs import post_out

router = APIRouter(prefix="/api/v1", tags=["registry"])


class PostIn(StrictIn):
    code: Text = Field(pattern=POST_CODE, description="Country, dash, 2 to 8 letters or digits (FR-NICE); never "
                                                      "reused: a closed post keeps its code")
    name: Text = Field(min_length=1, max_length=120, description="Its name as citizens read it")
    kind: Literal["CONSULATE", "CONSULAR_SECTION"]
    country: Text = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    city: Text = Field(min_length=1, max_length=80)
    jurisdiction: Text = Field("", max_length=2000, description="The territory it serves, in words")
    languages: list[Text] = Field(min_length=1, max_length=10, description="ISO 639-1 codes it serves citizens in "
                                                                           "(ar, fr, es ...)")
    time_zone: Text = Field(max_length=40, description="IANA time zone (Europe/Paris)")

    @field_validator("languages")
    @classmethod
    def _iso_639_1(cls, value: list[str]) -> list[str]:
        if posts.unknown_languages(value):
            raise ValueError("each language must be an ISO 639-1 code: two lower-case letters")
        return value

    @field_validator("time_zone")
    @classmethod
    def _iana(cls, value: str) -> str:
        if posts.unknown_time_zone(value):
            raise ValueError("not an IANA time zone the hub knows (Europe/Paris, Africa/Casablanca)")
        return value


class CloseIn(StrictIn):
    reason: Text = Field(min_length=1, max_length=500, description="Why the post closes (kept with it)")


def create(hub, identity: Identity, body: PostIn) -> dict:
    """Create the post and audit it, in one transaction (the API's and the console's way)."""
    with hub.sessions.begin() as session:
        post = posts.create_post(session, **body.model_dump(), created_by=identity.actor)
        audit.record(hub, session, identity, audit.POST_CREATED, post.code,
                     f"{post.kind} at {post.city} ({post.country})")
        return post_out(post)


def close(hub, identity: Identity, code: str, body: CloseIn) -> dict:
    """Close the post and audit it, in one transaction (the API's and the console's way)."""
    with hub.sessions.begin() as session:
        post = posts.close_post(session, code=code, reason=body.reason)
        audit.record(hub, session, identity, audit.POST_CLOSED, post.code, body.reason)
        return post_out(post)


@router.post("/posts", status_code=201, summary="Create a consular post (administrators)",
             responses={409: {"description": "The code is already a post's, open or closed"}})
def create_post(body: PostIn, request: Request, identity: Identity = Depends(allowed("posts:manage"))):
    return create(request.app.state.hub, identity, body)


@router.post("/posts/{code}/close", summary="Close a consular post that serves no citizen any more "
                                            "(administrators)",
             responses={409: {"description": "Already closed, or citizens are still registered there (how many "
                                             "is said): transfer them first"}})
def close_post(code: str, body: CloseIn, request: Request, identity: Identity = Depends(allowed("posts:manage"))):
    return close(request.app.state.hub, identity, code, body)
