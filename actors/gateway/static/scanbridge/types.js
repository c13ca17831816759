/**
 * The shapes of the service's answers and of what the client takes: devices and their
 * options, pages, scan jobs, cameras, events, the service's status. Types only (JSDoc),
 * re-exported by /scanbridge.js; the upload, OCR and barcode ones are in job-types.js.
 * @module scanbridge/types
 */

/**
 * A job's state on the service (see states.js).
 * @typedef {import("./states.js").JobStateName} JobStateName
 */

/**
 * A scanner (or, later, a camera) the service can use.
 * @typedef {object} Source
 * @property {string} id        stable id to pass to {@link Session#scan}, e.g. "test:0"
 * @property {string} type      "scanner"
 * @property {string} device    the driver's device name
 * @property {string} vendor
 * @property {string} model
 * @property {string} kind      e.g. "flatbed scanner", "sheetfed scanner", "virtual device"
 * @property {string} backend   the driver (SANE backend), e.g. "test", "airscan"
 * @property {boolean} busy     a scan job uses it now
 */

/**
 * A range constraint of an option.
 * @typedef {object} OptionRange
 * @property {number} min
 * @property {number} max
 * @property {number} step      0 when any value in the range is allowed
 */

/**
 * What an option accepts: a range, a list of values, or anything of its type (null).
 * @typedef {{range: OptionRange} | {values: Array<string|number>} | null} OptionConstraint
 */

/**
 * One device option, as a form needs it.
 * @typedef {object} OptionDescriptor
 * @property {string} name          the device's option name, e.g. "resolution", "tl-x"
 * @property {string} title
 * @property {string} description
 * @property {string} group         the option group's title ("" for none)
 * @property {"bool"|"int"|"fixed"|"string"|"button"|"unknown"} type
 * @property {"none"|"pixel"|"bit"|"mm"|"dpi"|"percent"|"microsecond"} unit
 * @property {OptionConstraint} constraint
 * @property {*} value              the value now (null when not readable or inactive)
 * @property {*} [default]          the device's value when first opened
 * @property {boolean} active       false when other settings make it irrelevant
 * @property {boolean} settable     software may set it
 * @property {boolean} readable
 * @property {boolean} automatic
 * @property {boolean} advanced
 * @property {boolean} emulated
 * @property {number} index
 * @property {number} [array]       number of values, for array options (shown, not settable)
 */

/**
 * A friendly option name that works on every device (`resolution`, `mode`, `source`,
 * `page_size`, `area`, `depth`, `adf`, `duplex`, `brightness`, `contrast`).
 * Which fields are present depends on the alias.
 * @typedef {object} OptionAlias
 * @property {string} [option]                  the device option it sets
 * @property {string} [type]                    "int", "fixed", "bool", ...
 * @property {OptionConstraint} [constraint]    for numeric aliases (resolution, depth, ...)
 * @property {string[]} [values]                accepted names: mode ["color", "gray",
 *                                              "lineart"], source ["flatbed", "adf",
 *                                              "duplex"], page_size ["max", "A4", ...]
 * @property {string[]} [device_values]         the device's own values behind them
 * @property {string} [unit]                    area: "mm"
 * @property {number} [width]                   area: the largest width (mm)
 * @property {number} [height]                  area: the largest height (mm)
 */

/**
 * The options of a source.
 * @typedef {object} SourceOptions
 * @property {string} source
 * @property {boolean} busy                     a job uses the device (the options are its)
 * @property {string} [job]                     that job's id
 * @property {OptionDescriptor[]} options
 * @property {Object<string, OptionAlias>} aliases
 */

/**
 * Values to scan with: aliases and/or the device's own option names.
 * @typedef {object} ScanSettings
 * @property {number} [resolution]              dpi
 * @property {"color"|"gray"|"lineart"} [mode]
 * @property {"flatbed"|"adf"|"duplex"} [source]
 * @property {string} [page_size]               "A4", "Letter", ..., "max"
 * @property {{left?: number, top?: number, width?: number, height?: number}} [area]  mm
 * @property {number} [depth]
 * @property {number} [brightness]
 * @property {number} [contrast]
 */

/**
 * One page (image) of the session's buffer.
 * @typedef {object} ImageInfo
 * @property {string} id
 * @property {number} index                     position in the page order (0-based)
 * @property {number} width                     pixels
 * @property {number} height                    pixels
 * @property {[number, number]} dpi
 * @property {"bw"|"gray"|"color"} mode
 * @property {number} bit_depth
 * @property {"jpeg"|"png"|"tiff"} format       how it is stored
 * @property {number} bytes
 * @property {string} source                    the source id, or "" (imported)
 * @property {number} created                   Unix time (seconds)
 * @property {string[]} tags
 * @property {number} edits                     number of edits (undo goes back one)
 * @property {object} meta
 * @property {string} etag                      changes with every edit
 * @property {object[]} [history]               only from {@link Session#imageInfo}
 */

/**
 * A scan job's record.
 * @typedef {object} Job
 * @property {string} job                       the job id
 * @property {JobStateName} state
 * @property {number} pages                     pages stored so far
 * @property {string[]} images                  their image ids
 * @property {number|null} [progress]           percent of the current page
 * @property {{code: string, message: string}|null} [error]
 * @property {object} [settings]                the device values applied (POST answer)
 */

/**
 * Progress of a scan, as `onProgress` gets it.
 * @typedef {object} Progress
 * @property {number} page                      the page being read (1-based)
 * @property {number|null} percent              of that page (100 once it is stored)
 * @property {number} pages                     pages stored so far
 */

/**
 * An event of the session. Server topics: `scan.progress`, `scan.page`, `scan.done`,
 * `scan.error`, `buffer.changed`, `buffer.import`, `buffer.save`, `upload.queued`,
 * `upload.progress`, `upload.retry`, `upload.done`, `upload.error`, `ocr.progress`,
 * `ocr.done`, `ocr.failed`, `ocr.cancelled`, `barcode.progress`, `barcode.done`,
 * `barcode.failed`, `barcode.cancelled`, `camera.error` (a live view ended: {source, code,
 * message}), `session.closed`.
 * Made by this client (seq = the last seq seen): `events.connected`,
 * `events.disconnected`, `events.lost`.
 * @typedef {object} ScanbridgeEvent
 * @property {number} seq
 * @property {string} topic
 * @property {Object<string, any>} data
 * @property {number} time                      Unix time (seconds)
 */

/**
 * @callback EventCallback
 * @param {ScanbridgeEvent} event
 * @returns {void}
 */

/**
 * One image edit. Crop boxes are in pixels of the current image, right/bottom exclusive;
 * rotate angles are degrees clockwise.
 * @typedef {{op: "rotate", angle: number} | {op: "flip"} | {op: "mirror"} | {op: "invert"}
 *   | {op: "crop", left: number, top: number, right: number, bottom: number}
 *   | {op: "resize", width?: number, height?: number}
 *   | {op: "bitdepth", mode: "bw"|"gray"|"color"}
 *   | {op: "brightness", value: number} | {op: "contrast", value: number}} EditOp
 */

/**
 * What {@link status} answers.
 * @typedef {object} ServiceStatus
 * @property {string} name
 * @property {string} display_name
 * @property {string} version                 the release, dotted numbers ("0.1.0")
 * @property {number} api                       the HTTP API's level (1): raised when the
 *                                              API gains what a page may test for
 * @property {number} time
 * @property {Object<string, {state: string, pid?: number, uptime?: number, ondemand?: boolean}>} actors
 * @property {object} services
 * @property {string[]} origins                 the allowed web origins
 */

/**
 * What {@link ensureService} answers: the status of the service that answered, and the
 * base URL it answered at (give it to `connect({url})`).
 * @typedef {ServiceStatus & {url: string}} LocatedService
 */

/**
 * The texts of {@link ensureService}'s dialog (e.g. translated); in `tooOld` and
 * `waitingNewer`, `{version}` and `{minVersion}` are replaced.
 * @typedef {object} PromptLabels
 * @property {string} [title]          the heading, which names the dialog
 * @property {string} [notRunning]     why it shows, when nothing answers
 * @property {string} [tooOld]         why it shows, when the service is older than minVersion
 * @property {string} [download]       the text of the link to `installUrl`
 * @property {string} [cancel]         the button that closes it
 * @property {string} [waiting]        the status line while nothing answers
 * @property {string} [waitingNewer]   the status line while an older service answers
 */

/**
 * @typedef {object} SessionRecord
 * @property {string} id
 * @property {number} created
 * @property {number} used
 * @property {number} images
 * @property {string|null} origin
 */

// --- cameras

/**
 * A camera the service can use: {@link Session#listSources} lists them after the
 * scanners, with `type` "camera".
 * @typedef {object} CameraSource
 * @property {string} id          "camera:NAME" (a named source of the ini), or the device's
 *                                stable "camera:<by-id name>", else "camera:videoN"
 * @property {"camera"} type
 * @property {string} name
 * @property {"v4l2"|"mjpeg"|"stream"|"file"} kind   a V4L2 device (webcam, document
 *                                camera), an MJPEG camera over HTTP, an RTSP stream, a video file
 * @property {string} device      /dev/videoN, or the URL (without its password) or file
 * @property {boolean} open       a live view or a capture has it open now
 */

/**
 * What a camera offers ({@link Session#getOptions} of a camera id).
 * @typedef {object} CameraOptions
 * @property {string} source
 * @property {string} kind
 * @property {string} size                      the frame size now, "WxH"
 * @property {number|null} fps                  the frame rate it sends
 * @property {{format: string, width: number, height: number, fps: number[]}[]} modes
 * @property {Object<string, number>} properties   adjustable ones (brightness, focus, ...)
 * @property {object[]} options                 resolution, interval, document and the properties
 */

/**
 * What {@link Session#liveView} takes.
 * @typedef {object} LiveViewOptions
 * @property {string} source                    a camera's id
 * @property {number} [fps]                     at most this many frames a second (the
 *                                              service's [camera] max_fps caps it)
 * @property {string} [resolution]              "WxH": one the camera offers (else the view
 *                                              ends with `invalid_option`)
 * @property {(error: import("./errors.js").ScanbridgeError) => void} [onError]
 *                                              the view ended by an error
 */

/**
 * What {@link Session#capture} takes.
 * @typedef {object} CaptureRequest
 * @property {string} source                    a camera's id
 * @property {number} [frames]                  frames to capture, each a page (default 1)
 * @property {number} [interval]                seconds between two frames (default 0: the
 *                                              next new frame)
 * @property {boolean} [document]               document mode: find the page in the frame,
 *                                              straighten and crop it
 * @property {string} [resolution]              "WxH": one the camera offers
 * @property {(image: ImageInfo) => void} [onPage]
 * @property {(progress: Progress) => void} [onProgress]
 * @property {AbortSignal} [signal]             aborting cancels the capture
 */

export {};  // a module: its typedefs are exported types
