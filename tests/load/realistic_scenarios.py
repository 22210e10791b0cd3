# tests/load/realistic_scenarios.py
#
# The seed's load-test user, as written, with only the host (locust --host)
# and the API key (TRANSCODE_API_KEY, created by scripts/load_test.sh) filled
# in. Run it with `make load` against a running stack (`make up`).

from locust import HttpUser, task, between, events
import os
import random
import time

class RealisticUser(HttpUser):
    """Simulate realistic user behavior"""

    wait_time = between(5, 15)

    def on_start(self):
        """User setup"""
        self.api_key = os.environ["TRANSCODE_API_KEY"]
        self.headers = {"X-API-Key": self.api_key}
        self.job_ids = []

    @task(1)
    def upload_and_monitor_workflow(self):
        """
        Complete workflow: Upload video and monitor until completion

        This simulates a real user uploading a video and waiting for results
        """

        # 1. Upload video
        files = {
            'file': ('test_video.mp4', open('sample_video.mp4', 'rb'), 'video/mp4')
        }

        with self.client.post(
            "/api/upload",
            headers=self.headers,
            files=files,
            catch_response=True
        ) as response:
            if response.status_code == 200:
                job_id = response.json()['job_id']
                self.job_ids.append(job_id)
                response.success()
            else:
                response.failure(f"Upload failed: {response.status_code}")
                return

        # 2. Monitor progress (poll every 5 seconds)
        max_attempts = 120  # 10 minutes max
        attempts = 0

        while attempts < max_attempts:
            time.sleep(5)
            attempts += 1

            with self.client.get(
                f"/api/jobs/{job_id}",
                headers=self.headers,
                catch_response=True,
                name="/api/jobs/[job_id]"
            ) as response:
                if response.status_code == 200:
                    job = response.json()

                    if job['status'] == 'completed':
                        response.success()
                        break
                    elif job['status'] == 'failed':
                        response.failure("Job failed")
                        break
                    else:
                        response.success()
                else:
                    response.failure(f"Status check failed: {response.status_code}")
                    break

    @task(5)
    def browse_jobs(self):
        """Browse existing jobs"""

        # List jobs
        self.client.get("/api/jobs", headers=self.headers, name="/api/jobs")

        # Get random job details
        if self.job_ids:
            job_id = random.choice(self.job_ids)
            self.client.get(
                f"/api/jobs/{job_id}",
                headers=self.headers,
                name="/api/jobs/[job_id]"
            )

    @task(2)
    def check_statistics(self):
        """Check usage statistics"""
        self.client.get("/api/jobs/stats", headers=self.headers)

@events.test_start.add_listener
def on_test_start(environment, **kwargs):
    print("Load test starting...")

@events.test_stop.add_listener
def on_test_stop(environment, **kwargs):
    print("Load test completed")
    print(f"Total requests: {environment.stats.total.num_requests}")
    print(f"Total failures: {environment.stats.total.num_failures}")
    print(f"Average response time: {environment.stats.total.avg_response_time}ms")
    print(f"95th percentile: {environment.stats.total.get_response_time_percentile(0.95)}ms")
