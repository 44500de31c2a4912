"""Voice prompts in zh-CN and en, played without blocking the screening flow.

Prompt audio is generated once with espeak-ng into a cache folder (at install, or at
the first start) and played with `aplay`. A worker thread with a small bounded queue
plays them; when it falls behind, older prompts are dropped, never the flow delayed.
`backend: none` only records what would have been said (tests, demo, silent gates).
"""

from __future__ import annotations

import collections
import hashlib
import logging
import pathlib
import queue
import shutil
import subprocess
import threading

from checkgate.config import StrictModel

logger = logging.getLogger(__name__)

PROMPTS = {
    "scan_code": {"en": "Please show your code", "zh-CN": "请出示通行码"},
    "come_closer": {"en": "Please come closer", "zh-CN": "请靠近测温"},
    "remeasure": {"en": "Please measure again", "zh-CN": "请重新测温"},
    "pass": {"en": "Temperature normal, please pass", "zh-CN": "体温正常，请通行"},
    "deny": {"en": "Access denied", "zh-CN": "禁止通行"},
    "fever": {"en": "Temperature too high, please wait for staff", "zh-CN": "体温异常，请等待工作人员"},
    "manual": {"en": "Please wait for staff", "zh-CN": "请等待工作人员"},
    "invalid_code": {"en": "Code not valid", "zh-CN": "通行码无效"},
}

ESPEAK_VOICES = {"en": "en", "zh-CN": "cmn"}


class AudioConfig(StrictModel):
    backend: str = "none"  # none | aplay
    language: str = "zh-CN"
    cache_dir: str = "voice-cache"
    player: str = "aplay"


class Voice:
    def __init__(self, config: AudioConfig, base_dir: pathlib.Path | None = None):
        self.config = config
        self.cache = (base_dir or pathlib.Path(".")) / config.cache_dir
        self.said: collections.deque[str] = collections.deque(maxlen=50)
        self._queue: queue.Queue[str] = queue.Queue(maxsize=3)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.config.backend == "none":
            return
        self.prepare()
        self._thread = threading.Thread(target=self._run, name="voice", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            try:
                self._queue.put_nowait("")  # wakes the worker so it sees the stop event
            except queue.Full:
                pass  # it is busy and will see the stop event after the current prompt
            self._thread.join(2)

    def say(self, prompt: str) -> None:
        """Queue a prompt; never blocks. Unknown prompt ids are logged and skipped."""
        if prompt not in PROMPTS:
            logger.warning("no voice prompt named %s", prompt)
            return
        self.said.append(prompt)
        if self.config.backend == "none":
            return
        try:
            self._queue.put_nowait(prompt)
        except queue.Full:
            try:  # drop the oldest: the newest prompt is what the person needs now
                self._queue.get_nowait()
                self._queue.put_nowait(prompt)
            except (queue.Empty, queue.Full):
                pass

    def wav_path(self, prompt: str, language: str | None = None) -> pathlib.Path:
        lang = language or self.config.language
        text = PROMPTS[prompt][lang]
        digest = hashlib.sha1(f"{lang}:{text}".encode()).hexdigest()[:10]
        return self.cache / f"{prompt}.{lang}.{digest}.wav"

    def prepare(self, languages: tuple[str, ...] | None = None) -> list[pathlib.Path]:
        """Generate missing prompt files with espeak-ng; returns the files present."""
        espeak = shutil.which("espeak-ng")
        self.cache.mkdir(parents=True, exist_ok=True)
        made = []
        for lang in languages or (self.config.language,):
            for prompt in PROMPTS:
                path = self.wav_path(prompt, lang)
                if not path.exists() and espeak:
                    subprocess.run([espeak, "-v", ESPEAK_VOICES.get(lang, "en"), "-w", str(path),
                                    PROMPTS[prompt][lang]], check=False, capture_output=True, timeout=30)
                if path.exists():
                    made.append(path)
        if not espeak:
            logger.warning("espeak-ng not installed: voice prompts unavailable")
        return made

    def _run(self) -> None:
        while not self._stop.is_set():
            prompt = self._queue.get()
            if not prompt or self._stop.is_set():
                continue
            path = self.wav_path(prompt)
            if not path.exists():
                continue
            try:
                subprocess.run([self.config.player, "-q", str(path)], check=False, timeout=15,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired) as err:
                logger.warning("cannot play %s: %s", path.name, err)
