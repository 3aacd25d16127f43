// A new offer buzzes and beeps where the browser allows: sound needs an AudioContext made
// during a tap (browsers block sound a page starts on its own), so the first tap unlocks it.

let audio = null;

export function unlockSound() {
  const Context = globalThis.AudioContext || globalThis.webkitAudioContext;
  if (!Context) return;
  audio ??= new Context();
  if (audio.state === "suspended") audio.resume().catch(() => {});
}

function beep(at, frequency) {
  const tone = audio.createOscillator();
  const volume = audio.createGain();
  tone.frequency.value = frequency;
  volume.gain.setValueAtTime(0.001, at);
  volume.gain.exponentialRampToValueAtTime(0.4, at + 0.02);
  volume.gain.exponentialRampToValueAtTime(0.001, at + 0.25);
  tone.connect(volume).connect(audio.destination);
  tone.start(at);
  tone.stop(at + 0.3);
}

export function alertNewOffer() {
  navigator.vibrate?.([200, 100, 200]);
  if (audio?.state === "running") {
    beep(audio.currentTime, 880);
    beep(audio.currentTime + 0.35, 1320);
  }
}
