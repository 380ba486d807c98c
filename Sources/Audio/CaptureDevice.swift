import CALSA
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What `CaptureDevice.wait` saw.
enum CaptureWait: Equatable {
    /// The device has audio (or an error that the next read will report).
    case ready
    /// The wake descriptor fired: `stop()` was called.
    case woken
    case timedOut
}

/// What the capture loop needs from a device: ALSA in production (`ALSACaptureDevice`), a scripted fake in
/// the tests of the recovery paths that a real device cannot be made to take on demand (overrun, suspend,
/// disappearance). Every call is made on the capture thread; errors are negative errno values, as ALSA
/// returns them, so the loop's recovery decisions are the same whatever the device.
protocol CaptureDevice: AnyObject {
    /// Opens and configures the device and starts it; returns what it agreed to.
    func open() throws(CaptureError) -> CaptureDeviceInfo
    /// Reads up to `frames` interleaved frames without blocking: frames read, or a negative errno
    /// (-EAGAIN when nothing is ready yet, -EPIPE overrun, -ESTRPIPE suspended, others fatal).
    func read(into buffer: UnsafeMutableRawPointer, frames: Int) -> Int
    /// Blocks until the device has audio, `wakeDescriptor` is readable, or `timeoutMilliseconds` pass.
    func wait(wakeDescriptor: Int32, timeoutMilliseconds: Int32) -> CaptureWait
    /// After -EPIPE: makes the device capture again. 0 or a negative errno.
    func recoverFromOverrun() -> Int32
    /// After -ESTRPIPE: one resume attempt. 0 resumed, -EAGAIN not ready yet, other: cannot resume.
    func resume() -> Int32
    /// Restarts capture from scratch (after a resume that cannot be done). 0 or a negative errno.
    func prepareAndStart() -> Int32
    /// Closes the device; safe to call when it is not open.
    func close()
    /// Words for a negative errno this device returned, including what ALSA logged about it.
    func describe(error: Int32) -> String
}

/// An ALSA PCM opened for capture. Owns the `snd_pcm_t` handle, the configuration tree it was opened
/// from (when an extra configuration file is used), the poll descriptor array, and the collector of
/// ALSA's own error messages for the capture thread.
final class ALSACaptureDevice: CaptureDevice {
    private let configuration: CaptureConfiguration
    private var pcm: OpaquePointer?
    /// The merged configuration `pcm` was opened from; freed only after the PCM is closed because
    /// plugins may keep pointers into it.
    private var localConfig: OpaquePointer?
    /// PCM poll descriptors followed by the wake descriptor; resized only when the device is opened.
    private var pollDescriptors: [pollfd] = []
    private var pcmDescriptorCount = 0
    private let messages = ALSAMessageLog()

    init(configuration: CaptureConfiguration) {
        self.configuration = configuration
    }

    deinit { close() }

    private var name: String { configuration.device }

    func open() throws(CaptureError) -> CaptureDeviceInfo {
        close()
        messages.install()
        messages.clear()
        var handle: OpaquePointer?
        var status: Int32
        // SND_PCM_NONBLOCK makes a busy device fail at once (-EBUSY) instead of blocking the thread in
        // open, and readi return -EAGAIN instead of sleeping, so stop() is never held up by the device.
        let mode = Int32(SND_PCM_NONBLOCK)
        if let path = configuration.alsaConfigFile {
            // Re-read on every open so that a fixed file is picked up by the next retry.
            localConfig = try loadConfiguration(path)
            status = snd_pcm_open_lconf(&handle, name, SND_PCM_STREAM_CAPTURE, mode, localConfig)
        } else {
            status = snd_pcm_open(&handle, name, SND_PCM_STREAM_CAPTURE, mode)
        }
        guard status >= 0, let handle else {
            let reason = describe(error: status)
            freeConfiguration()
            throw .openFailed(device: name, alsa: reason)
        }
        pcm = handle
        do {
            return try configure(handle)
        } catch {
            close()
            throw error
        }
    }

    private func loadConfiguration(_ path: String) throws(CaptureError) -> OpaquePointer {
        // The system tree (alsa.conf, ~/.asoundrc, hooks already expanded) is copied and the file loaded
        // on top, so its PCMs can refer to the system ones (`slave.pcm "hw:0"`, `null`, `default`).
        var global: OpaquePointer?
        var status = snd_config_update_ref(&global)
        guard status >= 0, let global else {
            throw .configFileFailed(path: path, alsa: "cannot read the system ALSA configuration: "
                                    + describe(error: status))
        }
        var copy: OpaquePointer?
        status = snd_config_copy(&copy, global)
        snd_config_unref(global)
        guard status >= 0, let copy else {
            throw .configFileFailed(path: path, alsa: describe(error: status))
        }
        var input: OpaquePointer?
        status = snd_input_stdio_open(&input, path, "r")
        guard status >= 0, let input else {
            snd_config_delete(copy)
            throw .configFileFailed(path: path, alsa: describe(error: status))
        }
        status = snd_config_load(copy, input)
        snd_input_close(input)
        guard status >= 0 else {
            snd_config_delete(copy)
            throw .configFileFailed(path: path, alsa: describe(error: status))
        }
        return copy
    }

    private func freeConfiguration() {
        if let localConfig { snd_config_delete(localConfig) }
        localConfig = nil
    }

    private func configure(_ pcm: OpaquePointer) throws(CaptureError) -> CaptureDeviceInfo {
        var hwPointer: OpaquePointer?
        guard snd_pcm_hw_params_malloc(&hwPointer) >= 0, let hw = hwPointer else {
            throw .configurationRefused(device: name, what: "hardware parameter", alsa: "out of memory")
        }
        defer { snd_pcm_hw_params_free(hw) }

        func check(_ status: Int32, _ what: String) throws(CaptureError) {
            if status < 0 { throw .configurationRefused(device: name, what: what, alsa: describe(error: status)) }
        }
        try check(snd_pcm_hw_params_any(pcm, hw), "hardware parameter")
        try check(snd_pcm_hw_params_set_access(pcm, hw, SND_PCM_ACCESS_RW_INTERLEAVED), "interleaved access")
        guard let format = configuration.formats.first(where: {
            snd_pcm_hw_params_test_format(pcm, hw, $0.alsaFormat) == 0
        }) else {
            throw .noSupportedFormat(device: name, tried: configuration.formats)
        }
        try check(snd_pcm_hw_params_set_format(pcm, hw, format.alsaFormat), "sample format \(format)")
        var channels = UInt32(configuration.channels)
        try check(snd_pcm_hw_params_set_channels_near(pcm, hw, &channels), "channel count")
        // Keep plug devices from converting the rate with ALSA's linear interpolator: the device's own
        // rate goes to libsamplerate's sinc converter, which does not alias.
        _ = snd_pcm_hw_params_set_rate_resample(pcm, hw, 0)
        var rate = UInt32(configuration.sampleRate)
        var direction: Int32 = 0
        try check(snd_pcm_hw_params_set_rate_near(pcm, hw, &rate, &direction), "sample rate")
        // Buffer before period, as arecord does: the buffer is the constraint that matters for overruns.
        switch configuration.bufferSize {
        case .frames(let n):
            var frames = snd_pcm_uframes_t(n)
            try check(snd_pcm_hw_params_set_buffer_size_near(pcm, hw, &frames), "buffer size")
        case .microseconds(let us):
            var time = UInt32(us)
            try check(snd_pcm_hw_params_set_buffer_time_near(pcm, hw, &time, &direction), "buffer time")
        }
        switch configuration.periodSize {
        case .frames(let n):
            var frames = snd_pcm_uframes_t(n)
            try check(snd_pcm_hw_params_set_period_size_near(pcm, hw, &frames, &direction), "period size")
        case .microseconds(let us):
            var time = UInt32(us)
            try check(snd_pcm_hw_params_set_period_time_near(pcm, hw, &time, &direction), "period time")
        }
        try check(snd_pcm_hw_params(pcm, hw), "hardware parameter")

        var actualRate: UInt32 = 0
        var actualChannels: UInt32 = 0
        var periodFrames: snd_pcm_uframes_t = 0
        var bufferFrames: snd_pcm_uframes_t = 0
        snd_pcm_hw_params_get_rate(hw, &actualRate, &direction)
        snd_pcm_hw_params_get_channels(hw, &actualChannels)
        snd_pcm_hw_params_get_period_size(hw, &periodFrames, &direction)
        snd_pcm_hw_params_get_buffer_size(hw, &bufferFrames)
        guard actualRate > 0, actualChannels > 0, periodFrames > 0 else {
            throw .configurationRefused(device: name, what: "hardware parameter",
                                        alsa: "the device reported a zero rate, channel count or period")
        }

        var swPointer: OpaquePointer?
        guard snd_pcm_sw_params_malloc(&swPointer) >= 0, let sw = swPointer else {
            throw .configurationRefused(device: name, what: "software parameter", alsa: "out of memory")
        }
        defer { snd_pcm_sw_params_free(sw) }
        try check(snd_pcm_sw_params_current(pcm, sw), "software parameter")
        // Wake the thread once per period, not per sample.
        try check(snd_pcm_sw_params_set_avail_min(pcm, sw, periodFrames), "wake-up threshold")
        try check(snd_pcm_sw_params(pcm, sw), "software parameter")

        let count = Int(snd_pcm_poll_descriptors_count(pcm))
        guard count > 0 else {
            throw .configurationRefused(device: name, what: "poll descriptor", alsa: describe(error: Int32(count)))
        }
        pollDescriptors = [pollfd](repeating: pollfd(), count: count + 1)
        let filled = pollDescriptors.withUnsafeMutableBufferPointer {
            snd_pcm_poll_descriptors(pcm, $0.baseAddress, UInt32(count))
        }
        guard filled == Int32(count) else {
            throw .configurationRefused(device: name, what: "poll descriptor", alsa: describe(error: min(filled, -EIO)))
        }
        pcmDescriptorCount = count
        try check(snd_pcm_start(pcm), "start")
        return CaptureDeviceInfo(device: name, sampleRate: Int(actualRate), channels: Int(actualChannels),
                                 format: format, periodFrames: Int(periodFrames), bufferFrames: Int(bufferFrames))
    }

    func read(into buffer: UnsafeMutableRawPointer, frames: Int) -> Int {
        guard let pcm else { return -Int(EBADFD) }
        return Int(snd_pcm_readi(pcm, buffer, snd_pcm_uframes_t(frames)))
    }

    func wait(wakeDescriptor: Int32, timeoutMilliseconds: Int32) -> CaptureWait {
        guard let pcm, pcmDescriptorCount > 0 else { return .ready }
        let count = pcmDescriptorCount
        let (polled, woken): (Int32, Bool) = pollDescriptors.withUnsafeMutableBufferPointer { fds in
            // ALSA's descriptors keep the events snd_pcm_poll_descriptors set; only revents change.
            for i in 0..<count { fds[i].revents = 0 }
            fds[count] = pollfd(fd: wakeDescriptor, events: Int16(POLLIN), revents: 0)
            let result = poll(fds.baseAddress, nfds_t(count + 1), timeoutMilliseconds)
            guard result > 0 else { return (result, false) }
            // Called for its side effect: plugins whose descriptor is an internal pipe or timer (dsnoop,
            // ioplug, pulse) acknowledge the wake-up here. What it reports - POLLIN for audio, POLLERR for an
            // xrun or a vanished device - the next read reports too, so the loop just reads.
            var revents: UInt16 = 0
            _ = snd_pcm_poll_descriptors_revents(pcm, fds.baseAddress, UInt32(count), &revents)
            return (result, fds[count].revents & Int16(POLLIN) != 0)
        }
        if woken { return .woken }
        if polled == 0 { return .timedOut }
        // Audio, an error for the next read to report, or poll's own EINTR: all handled by reading again.
        return .ready
    }

    func recoverFromOverrun() -> Int32 {
        guard let pcm else { return -EBADFD }
        messages.clear()
        // silent = 1: the loop counts overruns itself; ALSA would otherwise print each one on stderr.
        let status = snd_pcm_recover(pcm, -EPIPE, 1)
        if status < 0 { return status }
        return startIfPrepared(pcm)
    }

    func resume() -> Int32 {
        guard let pcm else { return -EBADFD }
        messages.clear()
        return snd_pcm_resume(pcm)
    }

    func prepareAndStart() -> Int32 {
        guard let pcm else { return -EBADFD }
        messages.clear()
        let status = snd_pcm_prepare(pcm)
        if status < 0 { return status }
        return startIfPrepared(pcm)
    }

    /// A capture stream does not start by itself after prepare.
    private func startIfPrepared(_ pcm: OpaquePointer) -> Int32 {
        snd_pcm_state(pcm) == SND_PCM_STATE_PREPARED ? snd_pcm_start(pcm) : 0
    }

    func close() {
        if let pcm {
            snd_pcm_close(pcm)
            self.pcm = nil
        }
        pcmDescriptorCount = 0
        freeConfiguration()
    }

    func describe(error: Int32) -> String {
        let alsa = String(cString: snd_strerror(error))
        let logged = messages.take()
        // ALSA's logged messages often end with the same reason ("... No such file or directory"):
        // it is not repeated after them.
        let text = logged.joined(separator: "; ")
        return logged.isEmpty ? alsa : text.hasSuffix(alsa) ? text : text + " (\(alsa))"
    }
}

extension CaptureSampleFormat {
    var alsaFormat: snd_pcm_format_t {
        switch self {
        case .s16LE: return SND_PCM_FORMAT_S16_LE
        case .s32LE: return SND_PCM_FORMAT_S32_LE
        case .float32LE: return SND_PCM_FORMAT_FLOAT_LE
        }
    }
}

/// Collects the messages ALSA logs (SNDERR/SYSERR) on the capture thread, so that an error can say
/// "Unknown PCM hw:99,0" instead of just "No such file or directory", and so that a device retried every
/// few seconds does not fill the daemon's stderr. ALSA's local handler is per thread; the thread finds
/// its collector through a pthread key because a C callback cannot capture context.
final class ALSAMessageLog {
    private var lines: [String] = []
    /// Most recent messages kept; a failing open logs two or three.
    private static let limit = 8

    /// Routes ALSA's messages on the calling thread to this log.
    func install() {
        pthread_setspecific(alsaMessageKey, Unmanaged.passUnretained(self).toOpaque())
        _ = snd_lib_error_set_local(alsaLocalErrorHandler)
    }

    deinit {
        if pthread_getspecific(alsaMessageKey) == Unmanaged.passUnretained(self).toOpaque() {
            pthread_setspecific(alsaMessageKey, nil)
        }
    }

    func append(_ line: String) {
        if lines.count == Self.limit { lines.removeFirst() }
        lines.append(line)
    }

    func clear() { lines.removeAll(keepingCapacity: true) }

    func take() -> [String] {
        defer { lines.removeAll(keepingCapacity: true) }
        return lines
    }
}

/// The pthread key under which a thread's `ALSAMessageLog` is found (an immutable process-wide key, set
/// up once; each thread's value is its own).
private let alsaMessageKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key, nil)
    return key
}()

private func alsaLocalErrorHandler(
    file: UnsafePointer<CChar>?, line: Int32, function: UnsafePointer<CChar>?, error: Int32,
    format: UnsafePointer<CChar>?, arguments: CVaListPointer?
) {
    guard let raw = pthread_getspecific(alsaMessageKey), let format, let arguments else { return }
    let log = Unmanaged<ALSAMessageLog>.fromOpaque(raw).takeUnretainedValue()
    var buffer = [CChar](repeating: 0, count: 512)
    var message = buffer.withUnsafeMutableBufferPointer { text in
        _ = vsnprintf(text.baseAddress, text.count, format, arguments)
        return String(cString: text.baseAddress!)
    }
    if error != 0 { message += ": " + String(cString: strerror(error)) }
    log.append(message)
}
