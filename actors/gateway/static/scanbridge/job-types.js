/**
 * The shapes of upload, OCR and barcode jobs: what they take, report and find. Types only
 * (JSDoc), re-exported by /scanbridge.js.
 * @module scanbridge/job-types
 */

/**
 * How far an upload is, as `onProgress` gets it: bytes of the request body (the multipart
 * framing included) sent to the receiver by the current attempt.
 * @typedef {object} UploadProgress
 * @property {number} sent
 * @property {number} total
 * @property {number} percent                   0-100 (100 once the job is done)
 * @property {number} [attempt]                 the attempt sending (1-based), from events
 */

/**
 * An upload attempt failed and another one is scheduled, as `onRetry` gets it.
 * @typedef {object} UploadRetry
 * @property {number} attempt                   the attempt that failed (1-based)
 * @property {number} delay                     seconds until the next one
 * @property {{code: string, message: string, status?: number}} error   why it failed
 */

/**
 * The receiver's answer to a finished upload (what other services call the response string).
 * @typedef {object} UploadResult
 * @property {number} status                    its HTTP status
 * @property {string} body                      its body as text (the first MiB)
 */

/**
 * An upload job's record, as the service keeps it.
 * @typedef {object} UploadRecord
 * @property {string} job                       the job id
 * @property {string} session
 * @property {import("./states.js").JobStateName} state
 * @property {UploadProgress} progress
 * @property {number} attempts                  attempts made so far
 * @property {string} url                       the receiver
 * @property {"POST"|"PUT"} method
 * @property {"pdf"|"tiff"|"jpeg"|"png"|"zip"} format
 * @property {{name: string, bytes: number}[]} files   what is sent (rendered at submit)
 * @property {string} [idempotency_key]         the same in every attempt's header
 * @property {number} [created]                 Unix time (seconds)
 * @property {number} [updated]
 * @property {number} [next_attempt]            Unix time of the next attempt (a retry waits)
 * @property {UploadResult} [result]            the receiver's answer (also of a refusal)
 * @property {{code: string, message: string, status?: number}} [error]
 */

/**
 * What to upload, and where: see {@link Session#upload}.
 * @typedef {object} UploadRequest
 * @property {string} url                       the receiver: this page's origin, or a
 *                                              prefix in user_config.ini [access] upload_targets
 * @property {string[]} [images]                image ids, in this order (default: all pages)
 * @property {"pdf"|"tiff"|"jpeg"|"png"|"zip"} [format]   default "pdf"; jpeg/png: one file
 *                                              per page; zip: one zip of pages
 * @property {"jpeg"|"png"} [pageFormat]        the pages of a zip (default "jpeg")
 * @property {"POST"|"PUT"} [method]            POST: multipart/form-data (default); PUT:
 *                                              the one file as the body
 * @property {Object<string, string>} [fields]  form fields sent with the file(s) (POST)
 * @property {Object<string, string>} [headers] extra request headers (not the framing ones)
 * @property {string} [filename]                the file name without extension (default "scan")
 * @property {string} [fieldName]               the form field of the file(s) (default "file")
 * @property {{user: string, password?: string}} [auth]   basic auth for the receiver
 * @property {string} [title]                   PDF metadata, also author, subject, keywords
 * @property {string} [author]
 * @property {string} [subject]
 * @property {string[]} [keywords]
 * @property {boolean} [pdfa]
 * @property {"auto"|"jpeg"|"lossless"} [compression]
 * @property {number} [quality]                 JPEG quality 1-100
 * @property {(progress: UploadProgress) => void} [onProgress]
 * @property {(retry: UploadRetry) => void} [onRetry]   an attempt failed; another follows
 * @property {AbortSignal} [signal]             aborting cancels the job
 */

/**
 * What an OCR job makes besides the result's text: "words" (each page's words with boxes,
 * in the result), "hocr" (an hOCR document), "pdf" (a searchable PDF). "text" is always made.
 * @typedef {"text"|"words"|"hocr"|"pdf"} OcrOutput
 */

/**
 * How far an OCR or barcode job is, as `onProgress` gets it: pages read of the job's pages.
 * @typedef {object} RecognitionProgress
 * @property {number} done                      pages read so far
 * @property {number} total                     pages of the job
 * @property {number} percent                   0-100, one decimal
 * @property {string} [image]                   the page just read (from events)
 * @property {number} [index]                   its place in the job's pages (0-based)
 */

/**
 * One word of an OCR page (`output` "words").
 * @typedef {object} OcrWord
 * @property {string} text
 * @property {number} conf                      0-100
 * @property {[number, number, number, number]} box   [x0, y0, x1, y1] in pixels of the
 *                                              page turned upright (see `rotation`)
 * @property {number} line
 * @property {number} block
 */

/**
 * One page of an OCR result.
 * @typedef {object} OcrPage
 * @property {string} image                     the image id
 * @property {number} index                     its place in the job's pages (0-based)
 * @property {string} text
 * @property {0|90|180|270} rotation            degrees clockwise turned to read it upright
 * @property {number} orientation_confidence
 * @property {number} width                     pixels of the image as stored
 * @property {number} height
 * @property {number|null} confidence           the words' mean confidence (null: no words)
 * @property {number} seconds
 * @property {{host: string, pid: number}} worker
 * @property {OcrWord[]} [words]                with `output` "words"
 */

/**
 * What an OCR job found ({@link OcrJob#done}).
 * @typedef {object} OcrResult
 * @property {string} lang                      e.g. "eng", "deu+eng"
 * @property {string} text                      every page's text, joined by "\f"
 * @property {OcrPage[]} pages
 * @property {{text: string, hocr?: string, pdf?: string}} files   API paths of the outputs
 *                                              (use {@link OcrJob#fileUrl} for a link)
 */

/**
 * One barcode or QR code found on a page.
 * @typedef {object} Barcode
 * @property {string} format                    e.g. "qr", "datamatrix", "code128", "ean13"
 * @property {string} text
 * @property {string} raw                       the bytes, base64
 * @property {Array<[number, number]>} points   its four corners in pixels of the page
 * @property {string} engine                    "zxing" or "zbar"
 */

/**
 * What a barcode job found ({@link BarcodeJob#done}).
 * @typedef {object} BarcodeResult
 * @property {string} engine
 * @property {number} count                     codes found on all pages
 * @property {{image: string, index: number, barcodes: Barcode[]}[]} pages
 */

/**
 * An OCR or barcode job's record, as the service keeps it.
 * @template R
 * @typedef {object} RecognitionRecord
 * @property {string} job                       the job id
 * @property {"ocr"|"barcodes"} kind
 * @property {string} session
 * @property {import("./states.js").JobStateName} state
 * @property {{done: number, total: number}} progress   pages read of the job's pages
 * @property {number} created                   Unix time (seconds)
 * @property {number|null} finished
 * @property {R} [result]                       once done
 * @property {{code: string, message: string}} [error]
 */

/**
 * The languages OCR can read ({@link Session#ocrLanguages}).
 * @typedef {object} OcrLanguages
 * @property {string[]} installed               e.g. ["deu", "eng", "fra"]
 * @property {string} default                   used when a job names none
 * @property {string} tesseract                 Tesseract's version
 * @property {object} [worker]                  the worker that answered
 */

export {};  // a module: its typedefs are exported types
