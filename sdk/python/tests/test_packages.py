"""Packages (TSSP), the signer, artifact downloads to a path, and idempotent creations.

Against a real ``tensafe serve`` where the server's behaviour is the point;
against a scripted loopback server (test_transport.Scripted) where the test
needs a tampered hash, a cut-off body or a 503 on cue.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import unittest

from _server import server
from test_training import TEXTS, byte_batch, config
from test_transport import KEY, Scripted, envelope

import tensafe
from tensafe import Conflict, ContentHashMismatch, NotFound, RetryPolicy, ValidationError


class PackagesTest(unittest.TestCase):
    """One trained, saved client shared by the tests (training is the slow part)."""

    @classmethod
    def setUpClass(cls):
        cls.srv = server()
        _, key = cls.srv.new_tenant()
        cls.svc = tensafe.ServiceClient(cls.srv.base_url, key)
        cls.tc = cls.svc.create_training_client(config())
        cls.tc.forward_backward(byte_batch(TEXTS))
        cls.tc.optim_step().result()
        cls.saved = cls.tc.save_state("pytest-pkg")
        cls.dir = tempfile.mkdtemp(prefix="tensafe-pkg-test-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_package_download_and_signer(self):
        res = self.svc.package_artifact(self.saved.artifact_id, ["tenant"], name="pytest.tssp")
        self.assertEqual(res.artifact.kind, "tssp")
        self.assertEqual(res.artifact.name, "pytest.tssp")
        self.assertTrue(res.package_id.startswith("tssp-"))
        self.assertEqual(res.steps, 1)
        self.assertGreater(res.epsilon, 0)
        self.assertTrue(res.weights_sha256.startswith("sha256:"))
        self.assertEqual(len(res.recipients), 1)
        self.assertTrue(res.recipients[0].startswith("kek:"))

        signer = self.svc.signer()
        self.assertEqual(signer.key_id, res.signer)
        self.assertTrue(signer.public_key.startswith("tensafe-sign-pub-v1:"))

        path = os.path.join(self.dir, "model.tssp")
        got = self.svc.download_artifact(res.artifact.id, path)
        self.assertEqual(got.path, path)
        self.assertEqual(got.size, res.artifact.size)
        self.assertEqual(got.content_hash, res.artifact.content_hash)
        with open(path, "rb") as f:
            data = f.read()
        self.assertEqual("sha256:" + hashlib.sha256(data).hexdigest(), res.artifact.content_hash)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(self.svc.download_artifact(res.artifact.id), data)  # in memory, checked too
        # Never over an existing file, unless asked; no temporary file left.
        with self.assertRaises(FileExistsError):
            self.svc.download_artifact(res.artifact.id, path)
        self.assertEqual(self.svc.download_artifact(res.artifact.id, path, overwrite=True).size, len(data))
        self.assertEqual(sorted(os.listdir(self.dir)), ["model.tssp"])

    def test_package_refusals(self):
        with self.assertRaises(TypeError):
            self.svc.package_artifact(self.saved.artifact_id, "tenant")
        with self.assertRaises(ValidationError) as cm:
            self.svc.package_artifact(self.saved.artifact_id, ["tenant", "not-a-key"])
        self.assertEqual(cm.exception.field, "recipients[1]")
        with self.assertRaises(ValidationError) as cm:
            self.svc.package_artifact(self.saved.artifact_id, [])
        self.assertEqual(cm.exception.field, "recipients")
        # Another tenant's checkpoint is not found, for packaging and download.
        other = self.srv.client()
        with self.assertRaises(NotFound):
            other.package_artifact(self.saved.artifact_id, ["tenant"])
        with self.assertRaises(NotFound):
            other.download_artifact(self.saved.artifact_id, os.path.join(self.dir, "x"))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "x")))

    def test_idempotent_creation(self):
        a = self.svc.create_training_client(config(), idempotency_key="pytest-create-1")
        b = self.svc.create_training_client(config(), idempotency_key="pytest-create-1")
        self.assertEqual(a.id, b.id)
        with self.assertRaises(Conflict) as cm:
            self.svc.create_training_client(config(sigma=2.0), idempotency_key="pytest-create-1")
        self.assertEqual(cm.exception.field, "Idempotency-Key")
        # Another tenant's key space is its own.
        self.assertNotEqual(self.srv.client().create_training_client(config(), idempotency_key="pytest-create-1").id, a.id)

    def test_idempotent_tenant_creation(self):
        admin = self.srv.admin
        a = admin.create_tenant("pytest-idem", idempotency_key="pytest-tenant-1")
        self.assertEqual(admin.create_tenant("pytest-idem", idempotency_key="pytest-tenant-1").id, a.id)
        with self.assertRaises(Conflict) as cm:
            admin.create_tenant("pytest-other", idempotency_key="pytest-tenant-1")
        self.assertEqual(cm.exception.field, "Idempotency-Key")


class ScriptedDownloadTest(unittest.TestCase):
    """Downloads and creations against scripted answers."""

    def setUp(self):
        self.srv = Scripted()
        self.svc = tensafe.ServiceClient(self.srv.url, KEY, retry=RetryPolicy(3, 0.0, 0.0))
        self.dir = tempfile.mkdtemp(prefix="tensafe-dl-test-")
        self.path = os.path.join(self.dir, "out.bin")

    def tearDown(self):
        self.svc.close()
        self.srv.shutdown()
        self.srv.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_hash_mismatch_writes_nothing(self):
        body = b"checkpoint bytes"
        wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
        self.srv.script = [(200, {"X-Content-Hash": wrong}, body)]
        with self.assertRaises(ContentHashMismatch):
            self.svc.download_artifact("art_1", self.path)
        self.assertEqual(os.listdir(self.dir), [])
        self.srv.script = [(200, {}, body)]  # no hash announced: refused too
        with self.assertRaises(tensafe.MalformedResponse):
            self.svc.download_artifact("art_1", self.path)
        self.assertEqual(os.listdir(self.dir), [])

    def test_retried_from_the_start(self):
        body = b"x" * 100_000
        good = "sha256:" + hashlib.sha256(body).hexdigest()
        self.srv.script = [(503, {}, envelope("unavailable")), "drop", (200, {"X-Content-Hash": good}, body)]
        got = self.svc.download_artifact("art_1", self.path)
        self.assertEqual((got.size, got.content_hash), (len(body), good))
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), body)
        self.assertEqual(len(self.srv.requests), 3)
        self.assertEqual(self.srv.requests[0][1], "/api/v1/artifacts/art_1/download")

    def test_creation_retried_on_5xx_with_one_key(self):
        info = json.dumps({"id": "tc_1", "base_model": "tensafe-tiny"}).encode()
        self.srv.script = [(503, {}, envelope("unavailable")), "drop", (201, {}, info)]
        tc = self.svc.create_training_client(config())
        self.assertEqual(tc.id, "tc_1")
        keys = {r[2].get("Idempotency-Key") for r in self.srv.requests}
        self.assertEqual(len(self.srv.requests), 3)
        self.assertEqual(len(keys), 1)
        self.assertTrue(next(iter(keys)))

    def test_tenant_retried_api_key_not(self):
        self.srv.script = [(502, {}, b"bad gateway"), (201, {}, b'{"id": "tn_1", "name": "acme"}')]
        self.assertEqual(self.svc.create_tenant("acme").id, "tn_1")
        self.assertEqual(len({r[2].get("Idempotency-Key") for r in self.srv.requests}), 1)
        self.assertEqual(len(self.srv.requests), 2)
        self.srv.script = [(503, {}, envelope("unavailable")), (201, {}, b"{}")]
        with self.assertRaises(tensafe.Unavailable):
            self.svc.create_api_key("tn_1")
        self.assertEqual(len(self.srv.requests), 3)

    def test_package_not_retried_on_5xx(self):
        self.srv.script = [(503, {}, envelope("unavailable")), (201, {}, b"{}")]
        with self.assertRaises(tensafe.Unavailable):
            self.svc.package_artifact("art_1", ["tenant"])
        self.assertEqual(len(self.srv.requests), 1)
        self.assertEqual(json.loads(self.srv.requests[0][3]), {"recipients": ["tenant"]})


if __name__ == "__main__":
    unittest.main()
