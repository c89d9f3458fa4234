# Builds Visor and its built-in guests, and installs them.
#
#   make                                  # swift build -c release, and every built-in guest
#   make install [PREFIX=/usr/local] [DESTDIR=...]
#   make install-built CONFIGURATION=debug PREFIX=...   # install what is built, building no Swift
#   make uninstall [PREFIX=/usr/local]
#
# An installed Visor is PREFIX/bin/visor, the guests' images in PREFIX/share/visor/guests (found
# relative to the executable: no checkout needed), the benchmark reference sources in
# PREFIX/share/visor/Benchmarks and the documents in PREFIX/share/doc/visor. Fetched guests
# (Guests/linux/fetch) are installed too when they have been fetched. The executable links the
# Swift runtime of the toolchain that built it.

PREFIX ?= /usr/local
CONFIGURATION ?= release
SWIFT ?= swift
# Where `swift build -c $(CONFIGURATION)` leaves the visor executable.
BUILD_DIR ?= .build/$(CONFIGURATION)
GUESTS_OUT := $(CURDIR)/.build/guests

BIN := $(DESTDIR)$(PREFIX)/bin
SHARE := $(DESTDIR)$(PREFIX)/share/visor
DOC := $(DESTDIR)$(PREFIX)/share/doc/visor
DOCS := README.md ARCHITECTURE.md BENCHMARKS.md docs/pv-abi.md docs/api.yaml

.PHONY: all visor guests install install-built uninstall

all: visor guests

visor:
	$(SWIFT) build -c $(CONFIGURATION) --product visor

# One guest at a time under the lock GuestCatalog takes, so a visor building a guest on first
# use, or a test beside this, never runs the same make at once, and waits for one guest at most.
guests:
	@mkdir -p $(GUESTS_OUT)
	@for guest in $$($(MAKE) -s -C Guests list); do \
	    flock $(GUESTS_OUT)/.build-lock $(MAKE) -s -C Guests OUT=$(GUESTS_OUT) $$guest || exit 1; \
	done

install: all install-built

install-built: guests
	@test -x $(BUILD_DIR)/visor || { echo "make: no $(BUILD_DIR)/visor: run make (or swift build -c $(CONFIGURATION)) first" >&2; exit 1; }
	install -d $(BIN) $(SHARE)/guests $(SHARE)/Benchmarks $(DOC)
	install -m 755 $(BUILD_DIR)/visor $(BIN)/visor
	install -m 644 $(GUESTS_OUT)/*.elf $(SHARE)/guests/
	install -m 644 Benchmarks/*.c $(SHARE)/Benchmarks/
	install -m 644 $(DOCS) $(DOC)/
	install -m 644 Guests/README.md $(DOC)/guests.md
	@if [ -f $(GUESTS_OUT)/linux/bzImage ]; then \
	    install -d $(SHARE)/guests/linux && \
	    install -m 644 $(GUESTS_OUT)/linux/bzImage $(GUESTS_OUT)/linux/vmlinux $(GUESTS_OUT)/linux/initramfs.cpio.gz \
	        $(SHARE)/guests/linux/; \
	fi

uninstall:
	rm -f $(BIN)/visor
	rm -rf $(SHARE) $(DOC)
