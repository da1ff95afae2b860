// Camera access: start/stop a user-facing stream and turn getUserMedia failures into messages people can act on.

/** What the browser lacks for the live camera, or null when it has everything. */
export function cameraSupportProblem() {
  if (!window.isSecureContext) {
    return 'The camera needs a secure page (https:// or localhost). You can still analyse a photo.';
  }
  if (!navigator.mediaDevices || typeof navigator.mediaDevices.getUserMedia !== 'function') {
    return 'No camera found: this browser offers no camera access (getUserMedia). You can still analyse a photo.';
  }
  return null;
}

/**
 * Map a getUserMedia error to {code, message}. Codes are the DOMException names, so tests and the
 * status object can tell the cases apart without parsing prose.
 */
export function describeCameraError(err) {
  const name = (err && err.name) || 'Error';
  switch (name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return {
        code: 'NotAllowedError',
        message: 'Camera access was denied. Allow the camera in your browser’s site settings and press ' +
          '“Start camera” again, or analyse a photo instead.',
      };
    case 'NotFoundError':
    case 'OverconstrainedError':
      return {
        code: 'NotFoundError',
        message: 'No camera found. Connect a camera and press “Start camera” again, or analyse a photo instead.',
      };
    case 'NotReadableError':
    case 'AbortError':
      return {
        code: 'NotReadableError',
        message: 'The camera is busy or could not be started (another app may be using it). Close other apps ' +
          'using the camera and try again, or analyse a photo instead.',
      };
    default:
      return {
        code: name,
        message: `The camera could not be started (${name}). You can try again or analyse a photo instead.`,
      };
  }
}

/**
 * Open a camera and play it in `video`: the one with `deviceId` if given, else the user-facing one. Resolves
 * with the stream once the first frame has dimensions; rejects with the getUserMedia error (see
 * describeCameraError).
 * @param {HTMLVideoElement} video
 * @param {{deviceId?: string}} [o]
 */
export async function startCamera(video, { deviceId } = {}) {
  const which = deviceId ? { deviceId: { exact: deviceId } } : { facingMode: 'user' };
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: false,
    video: { ...which, width: { ideal: 640 }, height: { ideal: 480 } },
  });
  video.srcObject = stream;
  video.muted = true;
  try {
    await video.play();
  } catch (err) {
    stopStream(stream);
    video.srcObject = null;
    throw err;
  }
  if (!video.videoWidth) {
    await new Promise((resolve) => video.addEventListener('loadedmetadata', resolve, { once: true }));
  }
  return stream;
}

/**
 * The cameras the browser lists (ids and labels are filled in once camera access was granted).
 * @returns {Promise<MediaDeviceInfo[]>}
 */
export async function videoInputs() {
  if (!navigator.mediaDevices || typeof navigator.mediaDevices.enumerateDevices !== 'function') return [];
  return (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput' && d.deviceId);
}

/**
 * Which camera `stream` comes from: {deviceId, facing} ('user', 'environment', or '' when the device does not
 * say, as desktop webcams often do not).
 * @param {MediaStream} stream
 */
export function cameraOf(stream) {
  const [track] = stream.getVideoTracks();
  const settings = track && typeof track.getSettings === 'function' ? track.getSettings() : {};
  return { deviceId: settings.deviceId || '', facing: settings.facingMode || '' };
}

/** Stop every track of `stream` (turns the camera light off) and detach it from `video`. */
export function stopCamera(video, stream) {
  stopStream(stream);
  if (video) {
    video.pause();
    video.srcObject = null;
  }
}

function stopStream(stream) {
  if (!stream) return;
  for (const track of stream.getTracks()) track.stop();
}

/**
 * Call `onFrame(now)` for each new video frame. Uses requestVideoFrameCallback where available (one call
 * per decoded frame), else requestAnimationFrame. Returns a cancel function.
 */
export function onVideoFrames(video, onFrame) {
  let active = true;
  const hasRVFC = typeof video.requestVideoFrameCallback === 'function';
  let handle = 0;
  const tick = (now) => {
    if (!active) return;
    onFrame(now);
    handle = hasRVFC ? video.requestVideoFrameCallback(tick) : requestAnimationFrame(tick);
  };
  handle = hasRVFC ? video.requestVideoFrameCallback(tick) : requestAnimationFrame(tick);
  return () => {
    active = false;
    if (hasRVFC) video.cancelVideoFrameCallback(handle);
    else cancelAnimationFrame(handle);
  };
}
