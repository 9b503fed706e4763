# Three jobs, each installing what it needs first, once (see scripts/bootstrap.sh).
.PHONY: run serve test check bench

run:    ## talk to profiles/casual-chat.yaml (local emulator when no endpoint is configured)
	bash scripts/bootstrap.sh run $(ARGS)

serve:  ## the browser console for profiles/ (open the URL it prints)
	bash scripts/bootstrap.sh serve $(ARGS)

test:   ## install test tools and virtual audio devices, then run the whole suite
	bash scripts/bootstrap.sh test $(ARGS)

check:  ## validate the shipped profiles
	.venv/bin/vlrun check profiles/

bench:  ## run every benchmark side by side and write bench/results/
	.venv/bin/python bench/run_all.py
