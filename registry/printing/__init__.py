"""Documents for citizens: what a post prints and hands over, and how anyone checks it.

    codes.py      the verification code printed on each document (unguessable, typo-proof)
    documents.py  what each kind of document prints, from a citizen or a case (the registration certificate; the
                  printable forms of the civil-status extract, the licence attestation and the judicial delivery
                  certificate)
    render.py     the PDF, in French or Arabic (shaped, right to left), with its QR code: WeasyPrint on Pango
    records.py    the registry's signed record of an issued document, and its verification
    issuing.py    issuing (scope, record, audit), revoking and verifying, over the database
    throttle.py   the public verification's rate limit
    views.py      the routes: the API's PDFs and revocation, the console's PDFs, the public /verify pages
"""
