import ArgumentParser
import Audio
import Decoding
import Dispatch
import Foundation
import Tensors
import Recognizer
import Training

#if canImport(Glibc)
import Glibc
#endif

struct Transcribe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Transcribe audio files (any format and sample rate libsndfile reads).",
        discussion: """
        With one file and no --output-dir the transcript goes to stdout. With several files, text \
        output prints 'FILE<TAB>TEXT' lines (a tab, newline or backslash in FILE written as \\t, \\n, \
        \\\\) and json prints one JSON object per line; with \
        --output-dir each file gets FILE-NAME.<txt|json|srt|vtt> there (written atomically; files \
        already there are refused, before any work, unless --overwrite). \
        A file that cannot be read (or a folder given as a file) is reported on stderr by name and \
        reason; the others are still transcribed, and the exit status is 1 if any failed.

        '-' reads the audio from standard input, and a pipe (/dev/stdin, <(...), a FIFO) is read to \
        its end before decoding, as libsndfile needs a file it can seek in: \
        `ffmpeg -i talk.mkv -f wav - | earshot transcribe -` (with --output-dir it becomes stdin.txt).

        A JSON object is {"file", "duration", "text", "words": [{"word", "start", "end", \
        "confidence"}]}: times in seconds from the file's start, confidence from 0 to 1; the words \
        have the keys of earshotd's final messages (docs/protocol.md). A calibrated model (the \
        shipped one is; `earshot model calibrate`) has its emission delay taken out of every time, so \
        words and subtitles follow the audio.

        Each file is split into utterances at its pauses, as earshotd splits live audio \
        (docs/endpointing.md), and each utterance is decoded on its own: words never run on across a \
        silence, and the JSON and subtitle times follow the speech. Audio below \(Int(EndpointConfig.recording.silenceLevel)) dBFS counts as \
        silence there: a file that quiet throughout (but not digitally silent) gives an empty \
        transcript and a warning. A quiet recording (loudest 20 ms below \(Int(RecordingLevel.quietBelow)) dBFS) is raised to \
        the level the model was trained at before recognition (--keep-level: not). \
        --whole-file decodes every file as one utterance instead (as `earshot eval` does).

        Decoding: a model adapted with --text decodes with its own domain LM. Any other model decodes \
        with the general English language model when one is installed: beam search (width \
        \(DecodingSettings.defaultSearchBeam)) with pocketsphinx-en-us's trigram, closed vocabulary, \
        LM weight \(DecodingSettings.generalLMWeight), word bonus \(DecodingSettings.generalWordBonus) \
        (32.6 % WER against 54.8 % greedy on the synthetic test set; models/README.md). It is $EARSHOT_LM, else \
        \(GeneralLanguageModel.fileName) in $XDG_CACHE_HOME/earshot/lm or ~/.cache/earshot/lm (scripts/setup.sh makes it with \
        `earshot lm compile`), ../share/earshot/lm next to the binary, /usr/local/share/earshot/lm or \
        /usr/share/earshot/lm. Without one, or with --no-general-lm, --beam 1, --no-model-lm or \
        EARSHOT_LM set empty, decoding is greedy (the fastest). --lm replaces it.
        """)

    @Argument(help: "Audio files: WAV, FLAC, OGG/Vorbis, AIFF, MP3, ... at any sample rate and channel count; '-' for standard input.")
    var files: [String]

    @OptionGroup var recognition: RecognitionOptions

    @Flag(name: .customLong("no-general-lm"), help: "Do not decode with the general English language model (see the overview above): greedy decoding, or beam search for --hotword.")
    var noGeneralLM = false

    @Flag(help: "Decode each file as one utterance instead of splitting it at pauses.")
    var wholeFile = false

    @Option(help: ArgumentHelp("Output format: text, json (words with times and confidences), srt or vtt (subtitles).",
                               discussion: "A subtitle cue holds words up to 42 characters or 5 seconds, and ends at a pause over 0.8 s; a cue shorter than a second stays up a second (or until just before the next one)."))
    var format: FormatArgument = .text

    @Option(help: "Files transcribed in parallel (one per core by default).")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Write one output file per input into this folder instead of stdout.")
    var outputDir: String?

    @Flag(help: ArgumentHelp("Do not raise a quiet recording's level before recognition.",
                             discussion: "By default a recording whose loudest 20 ms is below \(Int(RecordingLevel.quietBelow)) dBFS is raised (by up to \(Int(RecordingLevel.maxGainDB)) dB, never past a \(Int(RecordingLevel.peakCeiling)) dBFS peak) to the level the model was trained at; the silence level keeps judging the recording as it is."))
    var keepLevel = false

    @Flag(help: ArgumentHelp("Replace files that already exist in --output-dir.",
                             discussion: "Refused by default: a .txt beside its audio may be a transcript you wrote (for `earshot adapt`)."))
    var overwrite = false

    func run() throws {
        let format = format.value
        guard jobs >= 1 else { throw CLIError("--jobs \(jobs): must be at least 1") }
        if overwrite && outputDir == nil { throw CLIError("--overwrite applies to files in --output-dir; without it the transcripts go to stdout") }
        if files.filter({ $0 == "-" }).count > 1 { throw CLIError("'-' (standard input) can be given once") }
        if files.contains("-") && isatty(STDIN_FILENO) == 1 {
            throw CLIError("'-' reads audio from standard input, which is a terminal here: pipe the audio in (cat talk.wav | earshot transcribe -)")
        }
        if files.count > 1 && outputDir == nil && (format == .srt || format == .vtt) {
            throw CLIError("subtitles for several files need --output-dir (one .\(format.fileExtension) per file)")
        }
        if let folder = outputDir {
            // Two inputs with the same base name (a/x.wav, b/x.wav, or x.wav and x.flac) would write the
            // same output file, the later silently replacing the earlier: refuse before doing any work.
            var firstInput: [String: String] = [:]
            for path in files {
                let name = Self.outputName(path, format: format)
                if let other = firstInput[name] {
                    throw CLIError("'\(other)' and '\(path)' would both be written to \(name) in --output-dir; rename one or transcribe them in separate runs")
                }
                firstInput[name] = path
            }
            // Checked before any work, so a refusal costs nothing and nothing is half replaced.
            if !overwrite {
                let existing = firstInput.keys.sorted().map { URL(fileURLWithPath: folder).appendingPathComponent($0).path }
                    .filter { (try? FileManager.default.attributesOfItem(atPath: $0)) != nil }
                if let first = existing.first {
                    let others = existing.count > 1 ? " (and \(existing.count - 1) more)" : ""
                    throw CLIError("'\(first)'\(others) already exists; a transcript beside its audio may be your own (earshot adapt reads them): pass --overwrite to replace, or choose another --output-dir")
                }
            }
        }
        let (recognizer, _) = try recognition.makeRecognizer(generalLM: noGeneralLM ? nil : GeneralLanguageModel.locate())
        if let outputDir {
            do { try FileManager.default.createDirectory(atPath: outputDir, withIntermediateDirectories: true) } catch {
                throw CLIError("--output-dir '\(outputDir)': cannot create the folder: \(reason(of: error))")
            }
            // An existing folder that cannot be written would otherwise fail each file after its work.
            let probe = URL(fileURLWithPath: outputDir).appendingPathComponent(".earshot-write-test-\(getpid())")
            do { try Data().write(to: probe) } catch {
                throw CLIError("--output-dir '\(outputDir)': cannot write there: \(reason(of: error))")
            }
            unlink(probe.path)
        }
        let progress = files.count > 1 ? ProgressReporter(total: files.count, label: "transcribing") : nil
        let printer = OrderedPrinter(count: files.count, progress: progress)
        // Several files sharing stdout need a line each (FILE<TAB>TEXT, JSON Lines); with --output-dir each
        // file's transcript stands alone, as with one input.
        let several = files.count > 1 && outputDir == nil
        let outputDir = outputDir
        let files = files
        let wholeFile = wholeFile
        let keepLevel = keepLevel

        forEachConcurrently(files.count, jobs: jobs) { i in
            let path = files[i]
            var output: String?
            var failure: String?
            var warning: String?
            var spooled: URL?
            defer { if let spooled { close(Int32(spooled.lastPathComponent)!) } }
            do {
                spooled = try Self.spooledStream(path)
                let audio: DecodedAudio
                do throws(AudioError) { audio = try AudioFile.read(path: spooled?.path ?? path, targetSampleRate: recognizer.sampleRate) } catch {
                    // Errors name the file as the user gave it, not the spooled copy.
                    throw CLIError(spooled.map { "\(error)".replacingOccurrences(of: $0.path, with: path) } ?? Self.explained(error, path: path))
                }
                let level = RecordingLevel(samples: audio.samples, sampleRate: recognizer.sampleRate)
                let gain = keepLevel ? 0 : level.gainDB
                let transcript = recognizer.transcribe(audio.samples, splitAtPauses: !wholeFile, gainDB: gain).transcript
                // Split at pauses, audio below the silence level never reaches the model: a recording
                // that quiet would come back empty without a word of why.
                let gate = EndpointConfig.recording.silenceLevel
                if transcript.text.isEmpty, !wholeFile, let loudest = level.loudest, loudest < gate {
                    warning = String(format: "'%@': nothing in it is louder than %.0f dBFS (its loudest 20 ms: %.0f dBFS), the level below which audio is silence, so nothing was recognised; --whole-file decodes it regardless",
                                     path, gate, loudest)
                } else if let loudest = level.loudest, loudest < RecordingLevel.quietBelow, keepLevel || level.quietAfterGain {
                    // Still far below a normal recording as the model hears it: it loses words, and an
                    // empty or thin transcript would otherwise come with no hint why.
                    let why = keepLevel ? "and --keep-level leaves it so"
                        : gain >= RecordingLevel.maxGainDB - 1e-9 ? String(format: "raised by %.0f dB, the most earshot raises a recording", gain)
                        : gain > 0 ? String(format: "raised by %.0f dB, as far as its loudest sample (%.0f dBFS) allows", gain, level.peak ?? 0)
                        : String(format: "not raised: its loudest sample is already at %.0f dBFS (a click or a knock?)", level.peak ?? 0)
                    warning = String(format: "'%@': a quiet recording (its loudest 20 ms: %.0f dBFS; the model hears speech best above %.0f), %@: check the recording's level",
                                     path, loudest, RecordingLevel.quietBelow, why)
                }
                let rendered = Self.render(transcript, format: format, path: path, duration: audio.duration, several: several)
                if let outputDir {
                    let out = URL(fileURLWithPath: outputDir).appendingPathComponent(Self.outputName(path, format: format))
                    do { try Data(rendered.utf8).write(to: out, options: .atomic) } catch {
                        failure = "cannot write '\(out.path)': \(reason(of: error))"
                    }
                } else {
                    output = rendered
                }
            } catch {
                failure = "\(error)"
            }
            printer.deliver(i, output: output, failure: failure, warning: warning)
            progress?.advance(path)
        }
        progress?.finish()
        if printer.failures > 0 {
            // One file's failure is its own line; a tally only helps among several.
            if files.count > 1 { writeErrRaw("earshot: \(printer.failures) of \(files.count) files failed\n") }
            throw ExitCode(1)
        }
    }


    /// The file `--output-dir` gets for an input: its base name with the format's extension.
    static func outputName(_ path: String, format: TranscriptFormat) -> String {
        (path == "-" ? "stdin" : URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent) + "." + format.fileExtension
    }

    /// Standard input ('-') or a pipe or socket, copied to its end into a temporary file (libsndfile seeks,
    /// which a pipe cannot), returned as /proc/self/fd/N of the open, already unlinked copy: the space
    /// goes back however the process ends (Ctrl-C included), and the caller closes N. Nil for a path that
    /// is neither (a regular file, or whatever AudioFile will refuse by name). A FIFO without a writer
    /// waits for one, as `cat` would.
    static func spooledStream(_ path: String) throws -> URL? {
        guard let input = try pipedInput(path) else { return nil }
        defer { if input != STDIN_FILENO { close(input) } }
        return try spool(input, head: [], name: path)
    }

    /// The descriptor to read for standard input ('-') or a named pipe or socket, which libsndfile cannot
    /// open by name; nil for any other path. The caller closes it unless it is standard input. A FIFO
    /// without a writer waits for one, as `cat` would.
    static func pipedInput(_ path: String) throws -> Int32? {
        if path == "-" { return STDIN_FILENO }
        var status = stat()
        guard stat(path, &status) == 0, [S_IFIFO, S_IFSOCK].contains(status.st_mode & S_IFMT) else { return nil }
        let input = open(path, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw CLIError("cannot read '\(path)': \(String(cString: strerror(errno)))") }
        return input
    }

    /// `input` copied to its end into an open, unlinked temporary file, after `head` (bytes the caller
    /// already read from it); returns /proc/self/fd/N, and the caller closes N. Messages call it `name`.
    static func spool(_ input: Int32, head: [UInt8], name path: String) throws -> URL {
        var template = Array((FileManager.default.temporaryDirectory.path + "/earshot-stream-XXXXXX").utf8CString)
        let output = mkstemp(&template)
        guard output >= 0 else { throw CLIError("cannot make a temporary file for '\(path)' in \(FileManager.default.temporaryDirectory.path): \(String(cString: strerror(errno)))") }
        // Unlinked at once: nothing is left in the temporary folder if the run is interrupted.
        unlink(String(cString: template))
        var keep = false
        defer { if !keep { close(output) } }
        var buffer = head + [UInt8](repeating: 0, count: 1 << 20)
        var first = !head.isEmpty
        while true {
            let n = first ? head.count : buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            first = false
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                throw CLIError("cannot read '\(path)': \(String(cString: strerror(errno)))")
            }
            var written = 0
            while written < n {
                let w = buffer.withUnsafeBytes { write(output, $0.baseAddress! + written, n - written) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else {
                    throw CLIError("cannot copy '\(path)' to a temporary file in \(FileManager.default.temporaryDirectory.path) (libsndfile needs a file it can seek in): \(String(cString: strerror(errno)))")
                }
                written += w
            }
        }
        keep = true
        return URL(fileURLWithPath: "/proc/self/fd/\(output)")
    }

    /// AudioFile's message, with the likely cause when a name that is not UTF-8 was mangled on the way in
    /// (the argument then holds U+FFFD where the raw bytes were, and names no file).
    static func explained(_ error: AudioError, path: String) -> String {
        if case .fileNotFound = error, path.contains("\u{FFFD}") {
            return "\(error); its name is not valid UTF-8 (a Latin-1 or CP1252 name?), which earshot cannot pass on: rename it to UTF-8 (e.g. convmv -f latin1 -t utf8 --notest FILE)"
        }
        return "\(error)"
    }

    /// FILE of a 'FILE<TAB>TEXT' line: a tab or newline in a name would break the line apart.
    static func escapedPath(_ path: String) -> String {
        path.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\t", with: "\\t")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    static func render(_ t: Transcript, format: TranscriptFormat, path: String, duration: Double, several: Bool) -> String {
        switch (format, several) {
        case (.text, true): return "\(escapedPath(path))\t\(t.text)\n"
        case (.json, true):
            // One compact object per line (JSON Lines) when several files share stdout.
            return format.render(t, source: path, duration: duration, compact: true)
        default: return format.render(t, source: path, duration: duration)
        }
    }
}

struct FormatArgument: ExpressibleByArgument {
    var value: TranscriptFormat
    init(_ value: TranscriptFormat) { self.value = value }
    init?(argument: String) {
        guard let v = TranscriptFormat(rawValue: argument) else { return nil }
        value = v
    }
    static var allValueStrings: [String] { TranscriptFormat.allCases.map(\.rawValue) }
    static let text = FormatArgument(.text)
    var defaultValueDescription: String { value.rawValue }
}

/// Prints results in input order as soon as every earlier one is done, so output order does not
/// depend on which worker finishes first; failures go to stderr at once.
struct OrderedPrinter: Sendable {
    private struct State {
        var pending: [Int: String] = [:]
        var next = 0
        var done: [Bool]
        var failures = 0
    }
    // Workers deliver from several threads; printing happens under the lock so lines never interleave.
    private let state: Locked<State>
    private let progress: ProgressReporter?

    init(count: Int, progress: ProgressReporter? = nil) {
        state = Locked(State(done: [Bool](repeating: false, count: count)))
        self.progress = progress
    }

    var failures: Int { state.withLock { $0.failures } }

    func deliver(_ index: Int, output: String?, failure: String?, warning: String? = nil) {
        state.withLock { s in
            var lines: [(text: String, toStdout: Bool)] = []
            if let failure {
                s.failures += 1
                lines.append(("earshot: \(failure)\n", false))
            }
            if let warning { lines.append(("earshot: warning: \(warning)\n", false)) }
            s.done[index] = true
            if let output { s.pending[index] = output }
            while s.next < s.done.count && s.done[s.next] {
                if let text = s.pending.removeValue(forKey: s.next) { lines.append((text, true)) }
                s.next += 1
            }
            guard !lines.isEmpty else { return }
            let write = {
                for line in lines { if line.toStdout { writeOut(line.text) } else { writeErrRaw(line.text) } }
            }
            if let progress { progress.above(write) } else { write() }
        }
    }
}

/// Runs `body(i)` for i in 0..<count on `jobs` threads, handing out indexes in order.
func forEachConcurrently(_ count: Int, jobs: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let counter = Locked(0)
    DispatchQueue.concurrentPerform(iterations: min(jobs, max(count, 1))) { _ in
        while let i = counter.withLock({ n -> Int? in
            guard n < count else { return nil }
            n += 1
            return n - 1
        }) { body(i) }
    }
}
