"""uploader: a persistent queue that delivers documents to a web server exactly once.

Always running. A job names session images, an output format (pdf, tiff, jpeg or png per
page, or a zip of pages), a target URL (the page's own origin or one in ``[access]
upload_targets``), POST (multipart) or PUT, form fields, headers, a file name and basic
auth. The document is rendered into ``upload/<job>/`` before the job is acknowledged; the
queue is ``upload/jobs.db``. Every attempt carries the job's ``Idempotency-Key``.

=======  ===========================================  ==================================
op       args                                         result
=======  ===========================================  ==================================
submit   session, url, images?, origin?, method?,     the job
         format?, page_format?, fields?, headers?,
         filename?, field_name?, auth?, title? ...
job      job, session?                                {job, session, state: queued|
                                                      running|done|failed|cancelled,
                                                      progress: {sent, total, percent},
                                                      attempts, url, method, format,
                                                      files, result?: {status, body},
                                                      error?: {code, message, status?}}
jobs     session                                      [job]
cancel   job, session?                                the job
status                                                {jobs: {state: count}, workers}
=======  ===========================================  ==================================

Events: ``upload.queued {session, job}``, ``upload.progress {session, job, sent, total,
attempt}``, ``upload.retry {session, job, attempt, delay, error}``, ``upload.done
{session, job, state, status, body}``, ``upload.error {session, job, state, code,
message, status?, body?}`` (code upload_rejected, upload_failed, upload_tls_error,
upload_redirect_refused or cancelled; ``body``: the receiver's answer, when it gave one).
"""
